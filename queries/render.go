package queries

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/mattn/go-runewidth"
)

// Output formats.
const (
	FormatTable = "table"
	FormatJSON  = "json"
	FormatCSV   = "csv"
)

// Formats lists the output formats.
func Formats() []string { return []string{FormatTable, FormatJSON, FormatCSV} }

// RowStream is what the renderers read: *Rows, or a Result's Stream.
type RowStream interface {
	Columns() []Column
	Next() bool
	Values() []string
	Err() error
}

// RenderOptions configure Render.
type RenderOptions struct {
	// Format is table, json (JSON Lines) or csv.
	Format string
	// Width is the terminal width the table must fit; 0 means 120.
	// Ignored by json and csv.
	Width int
	// Notice, when set, is told which table columns were left off
	// because the terminal is too narrow for them.
	Notice io.Writer
	// TableSample is how many rows the table reads ahead to size its
	// columns before it streams the rest; 0 means 500.
	TableSample int
}

// CheckFormat returns an error naming the formats when f is not one.
func CheckFormat(f string) error {
	if slices.Contains(Formats(), f) {
		return nil
	}
	return fmt.Errorf("unknown output format %q (want %s)", f, strings.Join(Formats(), ", "))
}

// Render writes rows to w in opts.Format and returns how many rows it
// wrote. JSON and CSV are written row by row as they arrive.
func Render(w io.Writer, rows RowStream, opts RenderOptions) (int, error) {
	if err := CheckFormat(opts.Format); err != nil {
		return 0, err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var n int
	var err error
	switch opts.Format {
	case FormatJSON:
		n, err = renderJSON(bw, rows)
	case FormatCSV:
		n, err = renderCSV(bw, rows)
	default:
		n, err = renderTable(bw, rows, opts)
	}
	if ferr := bw.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("write output: %w", ferr)
	}
	return n, err
}

// machineTime turns ClickHouse's "2025-05-06 09:12:33.104512" (UTC) into
// RFC 3339 "2025-05-06T09:12:33.104512Z" for JSON and CSV consumers.
func machineTime(s string) string {
	if len(s) >= 19 && s[10] == ' ' {
		return s[:10] + "T" + s[11:] + "Z"
	}
	return s
}

func renderJSON(w *bufio.Writer, rows RowStream) (int, error) {
	cols := rows.Columns()
	keys := make([][]byte, len(cols))
	for i, c := range cols {
		k, err := json.Marshal(c.Name)
		if err != nil {
			return 0, fmt.Errorf("encode column name: %w", err)
		}
		keys[i] = k
	}
	n := 0
	var line []byte
	for rows.Next() {
		vals := rows.Values()
		line = append(line[:0], '{')
		for i, v := range vals {
			if i > 0 {
				line = append(line, ',')
			}
			line = append(line, keys[i]...)
			line = append(line, ':')
			switch {
			case cols[i].Numeric() && isJSONNumber(v):
				line = append(line, v...)
			case cols[i].Time():
				line = strconv.AppendQuote(line, machineTime(v))
			default:
				b, err := json.Marshal(v)
				if err != nil {
					return n, fmt.Errorf("encode value: %w", err)
				}
				line = append(line, b...)
			}
		}
		line = append(line, '}', '\n')
		if _, err := w.Write(line); err != nil {
			return n, fmt.Errorf("write output: %w", err)
		}
		n++
	}
	return n, rows.Err()
}

func isJSONNumber(s string) bool {
	if s == "" || s == "nan" || s == "inf" || s == "-inf" {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

func renderCSV(w *bufio.Writer, rows RowStream) (int, error) {
	cols := rows.Columns()
	cw := csv.NewWriter(w)
	rec := make([]string, len(cols))
	for i, c := range cols {
		rec[i] = c.Name
	}
	if err := cw.Write(rec); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	n := 0
	for rows.Next() {
		for i, v := range rows.Values() {
			if cols[i].Time() {
				v = machineTime(v)
			}
			rec[i] = v
		}
		if err := cw.Write(rec); err != nil {
			return n, fmt.Errorf("write output: %w", err)
		}
		n++
		if n%1024 == 0 {
			cw.Flush()
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, fmt.Errorf("write output: %w", err)
	}
	return n, rows.Err()
}

// Table layout.
const (
	tableSep      = "  "
	tableMinWidth = 6 // a column never shrinks below this (or its natural width)
	ellipsis      = "…"
)

func renderTable(w *bufio.Writer, rows RowStream, opts RenderOptions) (int, error) {
	width := opts.Width
	if width <= 0 {
		width = 120
	}
	sample := opts.TableSample
	if sample <= 0 {
		sample = 500
	}
	cols := rows.Columns()
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = strings.ToUpper(c.Name)
	}
	// Read ahead to size the columns.
	var buf [][]string
	for len(buf) < sample && rows.Next() {
		r := make([]string, len(cols))
		for i, v := range rows.Values() {
			r[i] = terminalSafe(v)
		}
		buf = append(buf, r)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	widths, shown := fitWidths(cols, header, buf, width)
	if shown < len(cols) && opts.Notice != nil {
		var hidden []string
		for _, c := range cols[shown:] {
			hidden = append(hidden, c.Name)
		}
		fmt.Fprintf(opts.Notice, "%d of %d columns left off to fit %d columns (%s): widen the terminal, set --width, or use --format csv or json\n",
			len(hidden), len(cols), width, strings.Join(hidden, ", "))
	}
	writeRow := func(cells []string) error {
		cells = cells[:shown]
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString(tableSep)
			}
			cell := truncate(c, widths[i])
			b.WriteString(cell)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-runewidth.StringWidth(cell)))
			}
		}
		b.WriteByte('\n')
		_, err := w.WriteString(b.String())
		return err
	}
	if err := writeRow(header); err != nil {
		return 0, fmt.Errorf("write output: %w", err)
	}
	n := 0
	for _, r := range buf {
		if err := writeRow(r); err != nil {
			return n, fmt.Errorf("write output: %w", err)
		}
		n++
	}
	cells := make([]string, len(cols))
	for rows.Next() {
		for i, v := range rows.Values() {
			cells[i] = terminalSafe(v)
		}
		if err := writeRow(cells); err != nil {
			return n, fmt.Errorf("write output: %w", err)
		}
		n++
	}
	return n, rows.Err()
}

// fitWidths sizes the columns to fit total: each starts at its natural
// width, then the columns with the most room above their floor shrink one
// cell at a time (times are never cut; other columns keep at least
// tableMinWidth, or their header up to 8 cells). If the floors alone are
// too wide, columns are left off from the right; shown is how many remain.
func fitWidths(cols []Column, header []string, rows [][]string, total int) (widths []int, shown int) {
	widths = make([]int, len(header))
	floor := make([]int, len(header))
	for i, h := range header {
		widths[i] = runewidth.StringWidth(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], runewidth.StringWidth(c))
		}
	}
	for i, h := range header {
		floor[i] = min(widths[i], max(tableMinWidth, min(runewidth.StringWidth(h), 8)))
		if cols[i].Time() {
			floor[i] = widths[i]
		}
	}
	sum := func(ws []int) int {
		s := len(tableSep) * (len(ws) - 1)
		for _, w := range ws {
			s += w
		}
		return s
	}
	shown = len(widths)
	for shown > 1 && sum(floor[:shown]) > total {
		shown--
	}
	widths = widths[:shown]
	for over := sum(widths) - total; over > 0; over-- {
		// Take a cell from the column with the most room above its
		// floor, so long columns give way before short ones are cut.
		roomiest := -1
		for i, w := range widths {
			if w > floor[i] && (roomiest < 0 || w-floor[i] > widths[roomiest]-floor[roomiest]) {
				roomiest = i
			}
		}
		if roomiest < 0 {
			break
		}
		widths[roomiest]--
	}
	return widths, shown
}

// truncate cuts s to width display cells, ending in "…" when cut.
func truncate(s string, width int) string {
	if runewidth.StringWidth(s) <= width {
		return s
	}
	if width <= 1 {
		return runewidth.Truncate(s, width, "")
	}
	return runewidth.Truncate(s, width, ellipsis)
}

// terminalSafe makes a value safe to print on a terminal: audit data is
// attacker-controlled (user agents, names), so control characters such as
// ESC are shown escaped instead of being interpreted.
func terminalSafe(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029':
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Stream returns a RowStream over the result.
func (r *Result) Stream() RowStream { return &resultStream{res: r, i: -1} }

type resultStream struct {
	res *Result
	i   int
}

func (s *resultStream) Columns() []Column { return s.res.Columns }
func (s *resultStream) Next() bool {
	if s.i+1 >= len(s.res.Rows) {
		return false
	}
	s.i++
	return true
}
func (s *resultStream) Values() []string { return s.res.Rows[s.i] }
func (s *resultStream) Err() error       { return nil }
