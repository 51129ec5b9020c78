package clickhouse

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Rows adapts clickhouse-go rows to engine.Rows. A destination of the
// column's own Go type is scanned into directly; the others the engine
// contract names are converted from it: integers of any width into
// *int64, *int32, *uint64, *uint32, *uint8 or *float64, UInt8 into *bool,
// String or FixedString into *[]byte and FixedString(32) into *[32]byte,
// numbers into *string in their decimal form.
type Rows struct {
	rows driver.Rows
	e    *Engine
	// plan holds, per column, a buffer of the column's own type where the
	// destination differs (nil where it scans directly).
	plan  []reflect.Value
	types []string // the columns' ClickHouse types
	args  []any
	err   error
}

// Next implements engine.Rows.
func (r *Rows) Next() bool { return r.rows.Next() }

// Columns implements engine.Rows.
func (r *Rows) Columns() []string { return r.rows.Columns() }

// ColumnTypes gives the result's column types (custody sql formats values
// by them).
func (r *Rows) ColumnTypes() []driver.ColumnType { return r.rows.ColumnTypes() }

// Err implements engine.Rows.
func (r *Rows) Err() error {
	if r.err != nil {
		return r.err
	}
	return r.e.failed(r.rows.Err())
}

// Close implements engine.Rows.
func (r *Rows) Close() error { return r.rows.Close() }

// Scan implements engine.Rows.
func (r *Rows) Scan(dest ...any) error {
	if r.plan == nil || len(r.plan) != len(dest) {
		types := r.rows.ColumnTypes()
		if len(types) != len(dest) {
			return fmt.Errorf("scan %d destinations from %d columns", len(dest), len(types))
		}
		r.plan = make([]reflect.Value, len(dest))
		r.types = make([]string, len(dest))
		r.args = make([]any, len(dest))
		for i, d := range dest {
			r.types[i] = types[i].DatabaseTypeName()
			st := types[i].ScanType()
			// DateTime64 always goes through convert, which undoes
			// clickhouse-go's overflow after 2262 (see exactTime).
			if dt := reflect.TypeOf(d); dt == nil || dt.Kind() != reflect.Pointer || dt.Elem() != st || isDateTime64(r.types[i]) {
				r.plan[i] = reflect.New(st)
			}
		}
	}
	for i, d := range dest {
		if r.plan[i].IsValid() {
			r.args[i] = r.plan[i].Interface()
		} else {
			r.args[i] = d
		}
	}
	if err := r.rows.Scan(r.args...); err != nil {
		return r.e.failed(err)
	}
	for i, d := range dest {
		if !r.plan[i].IsValid() {
			continue
		}
		if err := convert(r.plan[i].Elem(), d, r.types[i]); err != nil {
			return fmt.Errorf("scan column %s: %w", r.rows.Columns()[i], err)
		}
	}
	return nil
}

// convert stores src (a scanned value of ClickHouse type dbType) into dest.
func convert(src reflect.Value, dest any, dbType string) error {
	for src.Kind() == reflect.Pointer {
		if src.IsNil() {
			src = reflect.Zero(src.Type().Elem())
			break
		}
		src = src.Elem()
	}
	switch d := dest.(type) {
	case *string:
		switch src.Kind() {
		case reflect.String:
			*d = src.String()
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			*d = strconv.FormatInt(src.Int(), 10)
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			*d = strconv.FormatUint(src.Uint(), 10)
		case reflect.Float32, reflect.Float64:
			*d = strconv.FormatFloat(src.Float(), 'g', -1, 64)
		case reflect.Bool:
			*d = strconv.FormatBool(src.Bool())
		default:
			if t, ok := src.Interface().(time.Time); ok {
				*d = formatTime(exactTime(t, dbType), dbType)
				return nil
			}
			*d = fmt.Sprint(src.Interface())
		}
		return nil
	case *[]byte:
		if src.Kind() != reflect.String && !(src.Kind() == reflect.Slice && src.Type().Elem().Kind() == reflect.Uint8) {
			return fmt.Errorf("%s into *[]byte", src.Type())
		}
		if src.Kind() == reflect.String {
			*d = append((*d)[:0], src.String()...)
		} else {
			*d = append((*d)[:0], src.Bytes()...)
		}
		return nil
	case *[32]byte:
		var b []byte
		switch {
		case src.Kind() == reflect.String:
			b = []byte(src.String())
		case src.Kind() == reflect.Slice && src.Type().Elem().Kind() == reflect.Uint8:
			b = src.Bytes()
		default:
			return fmt.Errorf("%s into *[32]byte", src.Type())
		}
		if len(b) != 32 {
			return fmt.Errorf("fixed string of %d bytes, want 32", len(b))
		}
		copy(d[:], b)
		return nil
	case *bool:
		switch src.Kind() {
		case reflect.Bool:
			*d = src.Bool()
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			*d = src.Uint() != 0
		case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			*d = src.Int() != 0
		default:
			return fmt.Errorf("%s into *bool", src.Type())
		}
		return nil
	case *time.Time:
		t, ok := src.Interface().(time.Time)
		if !ok {
			return fmt.Errorf("%s into *time.Time", src.Type())
		}
		*d = exactTime(t, dbType)
		return nil
	}
	dv := reflect.ValueOf(dest)
	if dv.Kind() != reflect.Pointer || dv.IsNil() {
		return fmt.Errorf("destination %T is not a pointer", dest)
	}
	out := dv.Elem()
	switch out.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		switch src.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			out.SetInt(src.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			out.SetInt(int64(src.Uint()))
		default:
			return fmt.Errorf("%s into %T", src.Type(), dest)
		}
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		switch src.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			out.SetUint(uint64(src.Int()))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			out.SetUint(src.Uint())
		case reflect.Bool:
			if src.Bool() {
				out.SetUint(1)
			} else {
				out.SetUint(0)
			}
		default:
			return fmt.Errorf("%s into %T", src.Type(), dest)
		}
		return nil
	case reflect.Float32, reflect.Float64:
		switch src.Kind() {
		case reflect.Float32, reflect.Float64:
			out.SetFloat(src.Float())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			out.SetFloat(float64(src.Int()))
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			out.SetFloat(float64(src.Uint()))
		default:
			return fmt.Errorf("%s into %T", src.Type(), dest)
		}
		return nil
	}
	if src.Type().AssignableTo(out.Type()) {
		out.Set(src)
		return nil
	}
	return fmt.Errorf("%s into %T", src.Type(), dest)
}

// formatTime writes t as ClickHouse writes a value of type dbType
// (DateTime, DateTime64(p[, tz]) or Date) in text formats.
func formatTime(t time.Time, dbType string) string {
	t = t.UTC()
	var p int
	if _, err := fmt.Sscanf(dbType, "DateTime64(%d", &p); err == nil && p > 0 {
		s := t.Format("2006-01-02 15:04:05.000000000")
		return s[:len(s)-9+p]
	}
	if len(dbType) >= 4 && dbType[:4] == "Date" && (len(dbType) == 4 || dbType == "Date32") {
		return t.Format("2006-01-02")
	}
	return t.Format("2006-01-02 15:04:05")
}

func isDateTime64(dbType string) bool {
	return strings.HasPrefix(dbType, "DateTime64(") || strings.HasPrefix(dbType, "Nullable(DateTime64(")
}

// minDateTime64Nanos is DateTime64's lower bound, 1900-01-01 00:00:00
// UTC, in nanoseconds since the Unix epoch.
const minDateTime64Nanos = -2208988800 * int64(time.Second)

// exactTime undoes clickhouse-go's conversion of a DateTime64 value t of
// type dbType where it overflowed. clickhouse-go (through ch-go's
// DateTime64.Time) multiplies the stored ticks into nanoseconds in an
// int64, which wraps after 2262-04-11 23:47:16.854775807 UTC. DateTime64
// holds 1900-01-01 to 2299-12-31, so the true nanoseconds are in
// [minDateTime64Nanos, 2^64+minDateTime64Nanos): a wrapped value lands
// below minDateTime64Nanos, and read as an unsigned 64-bit number it is
// the true one. The columnar reader (QueryBlocks) reads the raw ticks
// instead and needs none of this.
func exactTime(t time.Time, dbType string) time.Time {
	if !isDateTime64(dbType) {
		return t
	}
	if t.Unix() >= minDateTime64Nanos/int64(time.Second) {
		return t
	}
	u := uint64(t.Unix()*int64(time.Second) + int64(t.Nanosecond()))
	return time.Unix(int64(u/uint64(time.Second)), int64(u%uint64(time.Second))).In(t.Location())
}
