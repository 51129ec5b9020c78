package grafana

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Query is what the plugin knows when it expands a panel's SQL: the
// dashboard's time range, the panel's interval and the template
// variables' current values.
type Query struct {
	From, To  time.Time
	Interval  time.Duration
	Variables map[string]string
}

// variableRE matches Grafana's variable syntaxes: $name, ${name} and
// ${name:format}. Built-in $__ names are macros, not variables.
var variableRE = regexp.MustCompile(`\$\{(\w+)(?::(\w+))?\}|\$(\w+)`)

// macroRE matches the plugin's backend macros as sqlds finds them:
// $__name with optional (args).
var macroRE = regexp.MustCompile(`\$__(\w+)(?:\(([^)]*)\))?`)

// Expand does what Grafana and the plugin do to a panel's raw SQL: the
// frontend replaces template variables (applyTemplateVariables: a single
// value unquoted, or the given format), then the backend replaces the
// macros (pkg/macros in grafana/clickhouse-datasource).
func Expand(sql string, q Query) (string, error) {
	var err error
	sql = variableRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := variableRE.FindStringSubmatch(m)
		name, format := sub[1], sub[2]
		if name == "" {
			name = sub[3]
		}
		if strings.HasPrefix(name, "__") {
			return m
		}
		v, ok := q.Variables[name]
		if !ok {
			err = fmt.Errorf("variable %s has no value", name)
			return m
		}
		switch format {
		case "":
			return v
		case "percentencode":
			return encodeURIComponentStrict(v)
		default:
			err = fmt.Errorf("variable %s: format %s not supported here", name, format)
			return m
		}
	})
	if err != nil {
		return "", err
	}
	sql = macroRE.ReplaceAllStringFunc(sql, func(m string) string {
		sub := macroRE.FindStringSubmatch(m)
		var args []string
		if sub[2] != "" {
			for _, a := range strings.Split(sub[2], ",") {
				args = append(args, strings.TrimSpace(a))
			}
		}
		out, merr := macro(sub[1], args, q)
		if merr != nil {
			err = merr
			return m
		}
		return out
	})
	return sql, err
}

// macro expands one plugin macro (pkg/macros/macros.go).
func macro(name string, args []string, q Query) (string, error) {
	dateTime := func(t time.Time) string { return fmt.Sprintf("toDateTime(%d)", t.Unix()) }
	want := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("macro $__%s: %d arguments, want %d", name, len(args), n)
		}
		return nil
	}
	switch name {
	case "fromTime":
		return dateTime(q.From), want(0)
	case "toTime":
		return dateTime(q.To), want(0)
	case "timeFilter":
		if err := want(1); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s >= %s AND %s <= %s", args[0], dateTime(q.From), args[0], dateTime(q.To)), nil
	case "timeInterval":
		if err := want(1); err != nil {
			return "", err
		}
		return fmt.Sprintf("toStartOfInterval(toDateTime(%s), INTERVAL %d second)", args[0], int(math.Max(q.Interval.Seconds(), 1))), nil
	case "interval_s":
		return fmt.Sprintf("%d", int(math.Max(q.Interval.Seconds(), 1))), want(0)
	}
	return "", fmt.Errorf("macro $__%s is not one the dashboards may use", name)
}

// encodeURIComponentStrict is Grafana's percentencode format: every byte
// but A-Z a-z 0-9 - _ . ~ as %XX, so the result holds no quote, backslash
// or other character SQL could read.
func encodeURIComponentStrict(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
