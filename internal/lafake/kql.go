package lafake

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// The KQL subset this server understands. Anything outside it is rejected
// with a SyntaxError so a test never passes against a query the server
// silently misread:
//
//	Query     = TableName { "|" Operator } .
//	Operator  = "where" Predicate
//	          | "extend" Ident "=" ( "ingestion_time()" | Ident )
//	          | ( "order" | "sort" ) "by" Ident [ "asc" | "desc" ]
//	          | ( "take" | "limit" ) Integer
//	          | "project" Ident { "," Ident } .
//	Predicate = Compare { "and" Compare } .
//	Compare   = Operand ( "==" | "!=" | "=~" | "!~" | "<" | "<=" | ">" | ">=" ) Operand
//	          | Operand ( "in" | "in~" | "!in" | "!in~" ) "(" Literal { "," Literal } ")" .
//	Operand   = Ident | "ingestion_time()" | "datetime(" ISO8601 ")" | String | Number .
//
// Line comments ("// ...") are ignored.

type tokenKind int

const (
	tokIdent tokenKind = iota
	tokString
	tokNumber
	tokDatetime
	tokPunct
)

type token struct {
	kind tokenKind
	text string
	pos  int
}

// tokenize splits a KQL text into tokens.
func tokenize(q string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(q) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '/' && i+1 < len(q) && q[i+1] == '/':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'':
			start := i
			i++
			var b strings.Builder
			closed := false
			for i < len(q) {
				if q[i] == '\\' && i+1 < len(q) {
					b.WriteByte(q[i+1])
					i += 2
					continue
				}
				if q[i] == c {
					closed = true
					i++
					break
				}
				b.WriteByte(q[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated string literal at %d", start)
			}
			toks = append(toks, token{kind: tokString, text: b.String(), pos: start})
		case c >= '0' && c <= '9':
			start := i
			for i < len(q) && (q[i] >= '0' && q[i] <= '9' || q[i] == '.') {
				i++
			}
			toks = append(toks, token{kind: tokNumber, text: q[start:i], pos: start})
		case c == '_' || unicode.IsLetter(rune(c)):
			start := i
			for i < len(q) && (q[i] == '_' || q[i] >= '0' && q[i] <= '9' || unicode.IsLetter(rune(q[i]))) {
				i++
			}
			word := q[start:i]
			if word == "datetime" && i < len(q) && q[i] == '(' {
				end := strings.IndexByte(q[i:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unterminated datetime literal at %d", start)
				}
				toks = append(toks, token{kind: tokDatetime, text: strings.TrimSpace(q[i+1 : i+end]), pos: start})
				i += end + 1
				continue
			}
			if word == "in" && i < len(q) && q[i] == '~' {
				word = "in~"
				i++
			}
			toks = append(toks, token{kind: tokIdent, text: word, pos: start})
		default:
			start := i
			two := ""
			if i+1 < len(q) {
				two = q[i : i+2]
			}
			switch {
			case two == "==" || two == "!=" || two == "=~" || two == "!~" || two == "<=" || two == ">=":
				toks = append(toks, token{kind: tokPunct, text: two, pos: start})
				i += 2
			case c == '!' && strings.HasPrefix(q[i:], "!in~"):
				toks = append(toks, token{kind: tokIdent, text: "!in~", pos: start})
				i += 4
			case c == '!' && strings.HasPrefix(q[i:], "!in"):
				toks = append(toks, token{kind: tokIdent, text: "!in", pos: start})
				i += 3
			case strings.IndexByte("|(),=<>", c) >= 0:
				toks = append(toks, token{kind: tokPunct, text: string(c), pos: start})
				i++
			default:
				return nil, fmt.Errorf("unexpected character %q at %d", c, start)
			}
		}
	}
	return toks, nil
}

// operand is one side of a comparison.
type operand struct {
	column    string // set for a column reference
	ingestion bool   // ingestion_time()
	lit       any    // string, float64 or time.Time for literals
}

type comparison struct {
	left  operand
	op    string
	right operand
	list  []any // for in, in~, !in, !in~
}

type operator struct {
	kind    string // where, extend, order, take, project
	preds   []comparison
	name    string // extend target, order column
	source  operand
	desc    bool
	n       int
	columns []string
}

// query is a parsed KQL query.
type query struct {
	table string
	ops   []operator
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) peek() (token, bool) {
	if p.i >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.i], true
}

func (p *parser) next() (token, error) {
	t, ok := p.peek()
	if !ok {
		return token{}, fmt.Errorf("unexpected end of query")
	}
	p.i++
	return t, nil
}

func (p *parser) expect(text string) error {
	t, err := p.next()
	if err != nil {
		return fmt.Errorf("expected %q: %w", text, err)
	}
	if t.text != text || t.kind == tokString {
		return fmt.Errorf("expected %q at %d, got %q", text, t.pos, t.text)
	}
	return nil
}

func (p *parser) ident() (string, error) {
	t, err := p.next()
	if err != nil {
		return "", err
	}
	if t.kind != tokIdent {
		return "", fmt.Errorf("expected a name at %d, got %q", t.pos, t.text)
	}
	return t.text, nil
}

// parseQuery parses the supported KQL subset.
func parseQuery(text string) (*query, error) {
	toks, err := tokenize(text)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	table, err := p.ident()
	if err != nil {
		return nil, fmt.Errorf("table name: %w", err)
	}
	q := &query{table: table}
	for {
		t, ok := p.peek()
		if !ok {
			return q, nil
		}
		if t.text != "|" {
			return nil, fmt.Errorf("expected '|' at %d, got %q", t.pos, t.text)
		}
		p.i++
		op, err := p.operator()
		if err != nil {
			return nil, err
		}
		q.ops = append(q.ops, op)
	}
}

func (p *parser) operator() (operator, error) {
	name, err := p.ident()
	if err != nil {
		return operator{}, fmt.Errorf("operator: %w", err)
	}
	switch name {
	case "where":
		var preds []comparison
		for {
			c, err := p.comparison()
			if err != nil {
				return operator{}, fmt.Errorf("where: %w", err)
			}
			preds = append(preds, c)
			if t, ok := p.peek(); ok && t.kind == tokIdent && t.text == "and" {
				p.i++
				continue
			}
			return operator{kind: "where", preds: preds}, nil
		}
	case "extend":
		target, err := p.ident()
		if err != nil {
			return operator{}, fmt.Errorf("extend: %w", err)
		}
		if err := p.expect("="); err != nil {
			return operator{}, fmt.Errorf("extend: %w", err)
		}
		src, err := p.operand()
		if err != nil {
			return operator{}, fmt.Errorf("extend: %w", err)
		}
		if src.column == "" && !src.ingestion {
			return operator{}, fmt.Errorf("extend: only a column or ingestion_time() is supported")
		}
		return operator{kind: "extend", name: target, source: src}, nil
	case "order", "sort":
		if err := p.expect("by"); err != nil {
			return operator{}, fmt.Errorf("%s: %w", name, err)
		}
		col, err := p.ident()
		if err != nil {
			return operator{}, fmt.Errorf("%s by: %w", name, err)
		}
		op := operator{kind: "order", name: col, desc: true} // KQL sorts descending by default
		if t, ok := p.peek(); ok && t.kind == tokIdent && (t.text == "asc" || t.text == "desc") {
			p.i++
			op.desc = t.text == "desc"
		}
		if t, ok := p.peek(); ok && t.text == "," {
			return operator{}, fmt.Errorf("%s by: only one sort column is supported", name)
		}
		return op, nil
	case "take", "limit":
		t, err := p.next()
		if err != nil {
			return operator{}, fmt.Errorf("%s: %w", name, err)
		}
		n, err := strconv.Atoi(t.text)
		if t.kind != tokNumber || err != nil || n < 0 {
			return operator{}, fmt.Errorf("%s: expected a row count at %d, got %q", name, t.pos, t.text)
		}
		return operator{kind: "take", n: n}, nil
	case "project":
		var cols []string
		for {
			c, err := p.ident()
			if err != nil {
				return operator{}, fmt.Errorf("project: %w", err)
			}
			cols = append(cols, c)
			if t, ok := p.peek(); ok && t.text == "," {
				p.i++
				continue
			}
			return operator{kind: "project", columns: cols}, nil
		}
	default:
		return operator{}, fmt.Errorf("operator %q is not supported by this server", name)
	}
}

func (p *parser) operand() (operand, error) {
	t, err := p.next()
	if err != nil {
		return operand{}, err
	}
	switch t.kind {
	case tokString:
		return operand{lit: t.text}, nil
	case tokNumber:
		f, err := strconv.ParseFloat(t.text, 64)
		if err != nil {
			return operand{}, fmt.Errorf("number at %d: %w", t.pos, err)
		}
		return operand{lit: f}, nil
	case tokDatetime:
		ts, err := parseDatetime(t.text)
		if err != nil {
			return operand{}, fmt.Errorf("datetime at %d: %w", t.pos, err)
		}
		return operand{lit: ts}, nil
	case tokIdent:
		if t.text == "ingestion_time" {
			if err := p.expect("("); err != nil {
				return operand{}, err
			}
			if err := p.expect(")"); err != nil {
				return operand{}, err
			}
			return operand{ingestion: true}, nil
		}
		if n, ok := p.peek(); ok && n.text == "(" {
			return operand{}, fmt.Errorf("function %q is not supported by this server", t.text)
		}
		return operand{column: t.text}, nil
	}
	return operand{}, fmt.Errorf("unexpected %q at %d", t.text, t.pos)
}

func (p *parser) comparison() (comparison, error) {
	left, err := p.operand()
	if err != nil {
		return comparison{}, err
	}
	t, err := p.next()
	if err != nil {
		return comparison{}, err
	}
	switch t.text {
	case "==", "!=", "=~", "!~", "<", "<=", ">", ">=":
		right, err := p.operand()
		if err != nil {
			return comparison{}, err
		}
		return comparison{left: left, op: t.text, right: right}, nil
	case "in", "in~", "!in", "!in~":
		if err := p.expect("("); err != nil {
			return comparison{}, err
		}
		c := comparison{left: left, op: t.text}
		for {
			v, err := p.operand()
			if err != nil {
				return comparison{}, err
			}
			if v.column != "" || v.ingestion {
				return comparison{}, fmt.Errorf("%s list holds only literals", t.text)
			}
			c.list = append(c.list, v.lit)
			n, err := p.next()
			if err != nil {
				return comparison{}, err
			}
			if n.text == ")" {
				return c, nil
			}
			if n.text != "," {
				return comparison{}, fmt.Errorf("expected ',' or ')' at %d, got %q", n.pos, n.text)
			}
		}
	}
	return comparison{}, fmt.Errorf("comparison operator %q at %d is not supported by this server", t.text, t.pos)
}

// parseDatetime accepts the ISO 8601 forms Kusto takes in datetime(...).
func parseDatetime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.9999999", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q", s)
}

// resultRow is a row being evaluated: the stored row plus extended columns.
type resultRow struct {
	ingested time.Time
	values   []any
}

// semanticError is a query that parsed but refers to something that does
// not exist (a table or a column), answered like Kusto's SemanticError.
type semanticError struct{ msg string }

func (e *semanticError) Error() string { return e.msg }

// run evaluates q against tables. It returns the result columns and rows.
func run(q *query, tables map[string]*Table) ([]Column, []resultRow, error) {
	tbl, ok := tables[q.table]
	if !ok {
		return nil, nil, &semanticError{msg: fmt.Sprintf("Failed to resolve table or column expression named '%s'", q.table)}
	}
	cols := append([]Column(nil), tbl.Columns...)
	rows := make([]resultRow, len(tbl.Rows))
	for i, r := range tbl.Rows {
		vals := make([]any, len(cols))
		copy(vals, r.Values)
		rows[i] = resultRow{ingested: r.Ingested, values: vals}
	}
	index := func(name string) int {
		for i, c := range cols {
			if c.Name == name {
				return i
			}
		}
		return -1
	}
	value := func(o operand, r resultRow) (any, error) {
		switch {
		case o.ingestion:
			return r.ingested, nil
		case o.column != "":
			i := index(o.column)
			if i < 0 {
				return nil, &semanticError{msg: fmt.Sprintf("Failed to resolve column or scalar expression named '%s'", o.column)}
			}
			if cols[i].Type == "datetime" {
				if s, ok := r.values[i].(string); ok {
					if t, err := parseDatetime(s); err == nil {
						return t, nil
					}
				}
			}
			return r.values[i], nil
		}
		return o.lit, nil
	}
	for _, op := range q.ops {
		switch op.kind {
		case "where":
			kept := rows[:0:0]
			for _, r := range rows {
				match := true
				for _, c := range op.preds {
					ok, err := evalCompare(c, r, value)
					if err != nil {
						return nil, nil, err
					}
					if !ok {
						match = false
						break
					}
				}
				if match {
					kept = append(kept, r)
				}
			}
			rows = kept
		case "extend":
			typ := "datetime"
			if !op.source.ingestion {
				i := index(op.source.column)
				if i < 0 {
					return nil, nil, &semanticError{msg: fmt.Sprintf("Failed to resolve column or scalar expression named '%s'", op.source.column)}
				}
				typ = cols[i].Type
			}
			target := index(op.name)
			if target < 0 {
				cols = append(cols, Column{Name: op.name, Type: typ})
			} else {
				cols[target].Type = typ
			}
			for k := range rows {
				v, err := value(op.source, rows[k])
				if err != nil {
					return nil, nil, err
				}
				if t, ok := v.(time.Time); ok {
					v = t.UTC().Format(time.RFC3339Nano)
				}
				if target < 0 {
					rows[k].values = append(rows[k].values, v)
				} else {
					rows[k].values[target] = v
				}
			}
		case "order":
			i := index(op.name)
			if i < 0 {
				return nil, nil, &semanticError{msg: fmt.Sprintf("Failed to resolve column or scalar expression named '%s'", op.name)}
			}
			typ := cols[i].Type
			sort.SliceStable(rows, func(a, b int) bool {
				c := compareValues(typ, rows[a].values[i], rows[b].values[i])
				if op.desc {
					return c > 0
				}
				return c < 0
			})
		case "take":
			if len(rows) > op.n {
				rows = rows[:op.n]
			}
		case "project":
			idx := make([]int, len(op.columns))
			for k, c := range op.columns {
				idx[k] = index(c)
				if idx[k] < 0 {
					return nil, nil, &semanticError{msg: fmt.Sprintf("Failed to resolve column or scalar expression named '%s'", c)}
				}
			}
			newCols := make([]Column, len(idx))
			for k, i := range idx {
				newCols[k] = cols[i]
			}
			for r := range rows {
				vals := make([]any, len(idx))
				for k, i := range idx {
					vals[k] = rows[r].values[i]
				}
				rows[r].values = vals
			}
			cols = newCols
		}
	}
	return cols, rows, nil
}

// compareValues orders two cell values of one column type; nulls first.
func compareValues(typ string, a, b any) int {
	if a == nil || b == nil {
		switch {
		case a == nil && b == nil:
			return 0
		case a == nil:
			return -1
		default:
			return 1
		}
	}
	if typ == "datetime" {
		as, _ := a.(string)
		bs, _ := b.(string)
		at, errA := parseDatetime(as)
		bt, errB := parseDatetime(bs)
		if errA == nil && errB == nil {
			return at.Compare(bt)
		}
	}
	af, aok := toFloat(a)
	bf, bok := toFloat(b)
	if aok && bok {
		switch {
		case af < bf:
			return -1
		case af > bf:
			return 1
		}
		return 0
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int:
		return float64(x), true
	case int64:
		return float64(x), true
	case string:
		f, err := strconv.ParseFloat(x, 64)
		return f, err == nil && !math.IsNaN(f)
	}
	return 0, false
}

func evalCompare(c comparison, r resultRow, value func(operand, resultRow) (any, error)) (bool, error) {
	l, err := value(c.left, r)
	if err != nil {
		return false, err
	}
	if c.list != nil {
		insensitive := strings.HasSuffix(c.op, "~")
		found := false
		for _, item := range c.list {
			if equalValues(l, item, insensitive) {
				found = true
				break
			}
		}
		if strings.HasPrefix(c.op, "!") {
			return !found, nil
		}
		return found, nil
	}
	rv, err := value(c.right, r)
	if err != nil {
		return false, err
	}
	switch c.op {
	case "==":
		return equalValues(l, rv, false), nil
	case "!=":
		return !equalValues(l, rv, false), nil
	case "=~":
		return equalValues(l, rv, true), nil
	case "!~":
		return !equalValues(l, rv, true), nil
	}
	if l == nil || rv == nil {
		return false, nil
	}
	var cmp int
	lt, lok := l.(time.Time)
	rt, rok := rv.(time.Time)
	switch {
	case lok && rok:
		cmp = lt.Compare(rt)
	case lok || rok:
		return false, &semanticError{msg: fmt.Sprintf("Cannot compare a datetime with a non-datetime value in '%s'", c.op)}
	default:
		lf, ok1 := toFloat(l)
		rf, ok2 := toFloat(rv)
		if ok1 && ok2 {
			switch {
			case lf < rf:
				cmp = -1
			case lf > rf:
				cmp = 1
			}
		} else {
			cmp = strings.Compare(fmt.Sprint(l), fmt.Sprint(rv))
		}
	}
	switch c.op {
	case "<":
		return cmp < 0, nil
	case "<=":
		return cmp <= 0, nil
	case ">":
		return cmp > 0, nil
	default: // ">="
		return cmp >= 0, nil
	}
}

func equalValues(a, b any, insensitive bool) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if at, ok := a.(time.Time); ok {
		bt, ok := b.(time.Time)
		return ok && at.Equal(bt)
	}
	af, aok := a.(float64)
	bf, bok := b.(float64)
	if aok && bok {
		return af == bf
	}
	as, bs := fmt.Sprint(a), fmt.Sprint(b)
	if insensitive {
		return strings.EqualFold(as, bs)
	}
	return as == bs
}
