// Package queries is Custody's catalogue of canned forensic queries: the
// questions a responder asks first after an incident on ACI, ACR or AKS
// ("what did this identity do", "who exec'd into a pod", "who pulled this
// digest"), each written once as ClickHouse SQL over the events table
// (storage/migrations/0001_trail.sql) and runnable on the embedded chDB
// engine and on ClickHouse servers alike.
//
// Each query is one file, catalogue/<name>.sql, embedded in the binary. The
// file opens with a block of "--" comment lines holding YAML metadata (the
// question it answers, why it matters, the MITRE ATT&CK techniques it
// covers, typed parameters with defaults, the default time window); the SQL
// follows. Parameters are ClickHouse server-side parameters ({name:Type})
// and the time window is always {from:DateTime64(6)} and {to:DateTime64(6)}
// on event_time; the table is {db:Identifier}.events. Load checks that the SQL and the metadata agree.
//
// Nothing a user types is spliced into SQL: Run validates every value
// against its declared type in Go and passes it as a bound parameter, so a
// bad value fails with an error naming the parameter, and a value that
// looks like SQL is only ever compared as data.
package queries

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed catalogue/*.sql
var catalogueFiles embed.FS

// Reserved parameter names: every query's time window, and the database
// holding the events table (bound by Runner, never by a user).
const (
	ParamFrom = "from"
	ParamTo   = "to"
	ParamDB   = "db"
)

// DefaultDatabase is the store's database unless configured otherwise
// (storage.SchemaOptions.Database).
const DefaultDatabase = "custody"

// Errors returned by the catalogue. Parameter errors wrap ErrBadParam.
var (
	ErrUnknownQuery = errors.New("unknown query")
	ErrBadParam     = errors.New("bad query parameter")
	ErrBadWindow    = errors.New("bad time window")
	ErrBadCatalogue = errors.New("bad query catalogue")
)

// Query is one canned forensic query.
type Query struct {
	// Name is the file name without .sql: what `custody query NAME` takes.
	Name string
	// Title is a short label for listings.
	Title string
	// Question is the one-line question the query answers.
	Question string
	// Why says why a responder asks it.
	Why string
	// MITRE lists ATT&CK techniques as "T1609 Container Administration
	// Command"; empty when no technique fits.
	MITRE []string
	// Params are the query's parameters besides the time window, in the
	// order the metadata declares them.
	Params []Param
	// Window is the default time window: [now-Window, now).
	Window time.Duration
	// SQL is the query text with {name:Type} placeholders.
	SQL string
}

// Param is one typed query parameter.
type Param struct {
	Name string
	// Type is the ClickHouse type of the placeholder: String, UInt8..UInt64,
	// Int8..Int64, DateTime64(6) or Array(String).
	Type string
	// Kind narrows what a value may be: "" (any), "cidr" (IP prefixes),
	// "ip" (one address), "registry" (registry host names, "*." allowed),
	// "digest" (sha256:<64 hex>), "resource" (an ARM id or a name).
	Kind string
	// Help describes the parameter.
	Help string
	// Default is used when the caller gives no value, in the same text
	// form a caller passes (arrays comma-separated).
	Default string
	// Required params have no useful default and must be given.
	Required bool
	// Min and Max bound integer values when set.
	Min, Max *int64
}

// Catalogue holds every canned query, by name.
type Catalogue struct {
	byName map[string]*Query
	names  []string
}

// Load reads and checks the embedded catalogue.
func Load() (*Catalogue, error) {
	return loadFS(catalogueFiles, "catalogue")
}

func loadFS(fsys fs.FS, dir string) (*Catalogue, error) {
	files, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, fmt.Errorf("list queries: %w", err)
	}
	c := &Catalogue{byName: make(map[string]*Query, len(files))}
	for _, f := range files {
		text, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read query %s: %w", f, err)
		}
		name := strings.TrimSuffix(path.Base(f), ".sql")
		q, err := parseQuery(name, string(text))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadCatalogue, path.Base(f), err)
		}
		c.byName[name] = q
		c.names = append(c.names, name)
	}
	sort.Strings(c.names)
	return c, nil
}

// List returns every query, sorted by name.
func (c *Catalogue) List() []*Query {
	out := make([]*Query, 0, len(c.names))
	for _, n := range c.names {
		out = append(out, c.byName[n])
	}
	return out
}

// Get returns the named query, or an error wrapping ErrUnknownQuery that
// lists the known names.
func (c *Catalogue) Get(name string) (*Query, error) {
	if q, ok := c.byName[name]; ok {
		return q, nil
	}
	return nil, fmt.Errorf("%w %q (custody query --list shows the %d known queries)", ErrUnknownQuery, name, len(c.names))
}

// meta is the YAML front matter of a query file.
type meta struct {
	Title    string      `yaml:"title"`
	Question string      `yaml:"question"`
	Why      string      `yaml:"why"`
	MITRE    []string    `yaml:"mitre"`
	Window   string      `yaml:"window"`
	Params   []paramMeta `yaml:"params"`
}

type paramMeta struct {
	Name     string    `yaml:"name"`
	Type     string    `yaml:"type"`
	Kind     string    `yaml:"kind"`
	Help     string    `yaml:"help"`
	Default  yaml.Node `yaml:"default"`
	Required bool      `yaml:"required"`
	Min      *int64    `yaml:"min"`
	Max      *int64    `yaml:"max"`
}

var (
	queryName   = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	paramName   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	placeholder = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}`)
	mitreID     = regexp.MustCompile(`^T[0-9]{4}(\.[0-9]{3})? \S`)
)

// parseQuery splits a query file into its metadata comment block and SQL,
// and checks that the two agree.
func parseQuery(name, text string) (*Query, error) {
	if !queryName.MatchString(name) {
		return nil, fmt.Errorf("query name %q must be lower-case words joined by '-'", name)
	}
	var yamlLines []string
	lines := strings.Split(text, "\n")
	i := 0
	for ; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "--") {
			break
		}
		l = strings.TrimPrefix(l, "--")
		l = strings.TrimPrefix(l, " ")
		yamlLines = append(yamlLines, l)
	}
	sql := strings.TrimSpace(strings.Join(lines[i:], "\n"))
	if len(yamlLines) == 0 {
		return nil, errors.New("missing metadata comment block")
	}
	if sql == "" {
		return nil, errors.New("no SQL after the metadata block")
	}
	var m meta
	dec := yaml.NewDecoder(strings.NewReader(strings.Join(yamlLines, "\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	q := &Query{Name: name, Title: m.Title, Question: m.Question, Why: m.Why, MITRE: m.MITRE, SQL: sql}
	switch {
	case q.Title == "":
		return nil, errors.New("metadata: title is required")
	case q.Question == "":
		return nil, errors.New("metadata: question is required")
	case q.Why == "":
		return nil, errors.New("metadata: why is required")
	}
	for _, t := range q.MITRE {
		if !mitreID.MatchString(t) {
			return nil, fmt.Errorf("metadata: MITRE technique %q must read \"T1234[.567] Name\"", t)
		}
	}
	w, err := ParseDuration(m.Window)
	if err != nil {
		return nil, fmt.Errorf("metadata: window: %w", err)
	}
	q.Window = w

	declared := map[string]string{ParamFrom: "DateTime64(6)", ParamTo: "DateTime64(6)", ParamDB: "Identifier"}
	for _, pm := range m.Params {
		p, err := pm.param()
		if err != nil {
			return nil, fmt.Errorf("metadata: parameter %q: %w", pm.Name, err)
		}
		if _, dup := declared[p.Name]; dup {
			return nil, fmt.Errorf("metadata: parameter %q declared twice or reserved", p.Name)
		}
		declared[p.Name] = p.Type
		q.Params = append(q.Params, p)
	}

	used := map[string]bool{}
	for _, ph := range placeholder.FindAllStringSubmatch(sql, -1) {
		name, typ := ph[1], ph[2]
		want, ok := declared[name]
		if !ok {
			return nil, fmt.Errorf("SQL uses {%s:%s}, which the metadata does not declare", name, typ)
		}
		if typ != want {
			return nil, fmt.Errorf("SQL uses {%s:%s} but the metadata declares %s", name, typ, want)
		}
		used[name] = true
	}
	// sorted, so the error names the same parameter every time
	for _, name := range slices.Sorted(maps.Keys(declared)) {
		if !used[name] {
			return nil, fmt.Errorf("parameter %q is declared but not used in the SQL", name)
		}
	}
	for _, l := range strings.Split(sql, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "--") && strings.Contains(l, ";") {
			return nil, errors.New("SQL must be one statement without ';'")
		}
	}
	return q, nil
}

func (pm paramMeta) param() (Param, error) {
	p := Param{Name: pm.Name, Type: pm.Type, Kind: pm.Kind, Help: pm.Help, Required: pm.Required, Min: pm.Min, Max: pm.Max}
	if !paramName.MatchString(p.Name) {
		return p, errors.New("name must be lower-case letters, digits and '_'")
	}
	if p.Help == "" {
		return p, errors.New("help is required")
	}
	if _, ok := intBits(p.Type); !ok {
		switch p.Type {
		case "String", "Array(String)", "DateTime64(6)":
		default:
			return p, fmt.Errorf("unsupported type %q (want String, UInt8..UInt64, Int8..Int64, DateTime64(6) or Array(String))", p.Type)
		}
	}
	switch p.Kind {
	case "":
	case kindCIDR, kindRegistry:
		if p.Type != "Array(String)" {
			return p, fmt.Errorf("kind %s needs type Array(String)", p.Kind)
		}
	case kindIP, kindDigest, kindResource:
		if p.Type != "String" {
			return p, fmt.Errorf("kind %s needs type String", p.Kind)
		}
	default:
		return p, fmt.Errorf("unknown kind %q (want cidr, ip, registry, digest or resource)", p.Kind)
	}
	if (p.Min != nil || p.Max != nil) && !isIntType(p.Type) {
		return p, errors.New("min and max apply to integer types only")
	}
	switch pm.Default.Kind {
	case 0:
	case yaml.ScalarNode:
		p.Default = pm.Default.Value
	case yaml.SequenceNode:
		if p.Type != "Array(String)" {
			return p, errors.New("a list default needs type Array(String)")
		}
		var items []string
		if err := pm.Default.Decode(&items); err != nil {
			return p, fmt.Errorf("default: %w", err)
		}
		p.Default = strings.Join(items, ",")
	default:
		return p, errors.New("default must be a scalar or a list")
	}
	if p.Required && p.Default != "" {
		return p, errors.New("a required parameter has no default")
	}
	if !p.Required {
		// The default must itself be a valid value.
		if _, err := p.Bind(p.Default); err != nil {
			return p, fmt.Errorf("default: %w", err)
		}
	}
	return p, nil
}

// ParseDuration parses a window such as "90m", "24h", "7d" or "2w".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	unit := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour}
	if u, ok := unit[s[len(s)-1]]; ok {
		n, err := strconv.ParseUint(s[:len(s)-1], 10, 16)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("duration %q: want a positive whole number of days or weeks, e.g. 7d", s)
		}
		return time.Duration(n) * u, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want e.g. 90m, 24h, 7d, 2w", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

// ContentFields are the normalized fields on which copies of one event
// (the same event_id delivered by several paths) must agree: what
// happened, when, by whom, from where, to what, with which outcome. Paths
// legitimately differ in the rest (category, reason, tenant, attributes,
// and the source and raw fields), so those are not compared. The
// delivery-conflicts query and `custody status` compare these.
func ContentFields() []string {
	return []string{"event_time", "service", "subscription_id", "resource_group", "provider", "resource_type",
		"resource_name", "resource_id", "actor_name", "actor_object_id", "actor_type", "actor_app_id",
		"impersonated_by", "source_ip", "user_agent", "action", "action_class", "target_api_group",
		"target_resource", "target_subresource", "target_namespace", "target_name", "target_repository",
		"target_tag", "target_digest", "target_container_group", "target_container", "target_image",
		"outcome", "status_code", "tags"}
}

// DeliverySummarySQL counts, over the events of db in the window
// [{from:DateTime64(6)}, {to:DateTime64(6)}), the stored rows, the
// distinct events (event ids), the events stored more than once and those
// whose copies disagree on ContentFields: what `custody status` reports.
// Ids are grouped by a 64-bit hash, and only the rows of repeated ids are
// fingerprinted (as delivery-conflicts does).
func DeliverySummarySQL(db string) string {
	fp := "cityHash64(" + strings.Join(ContentFields(), ", ") + ")"
	window := "event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}"
	repeated := "SELECT cityHash64(event_id) AS id FROM " + db + ".events WHERE " + window + " GROUP BY id HAVING count() > 1"
	return `SELECT
    sum(n) AS rows,
    count() AS events,
    countIf(n > 1) AS repeated,
    (
        SELECT count()
        FROM
        (
            SELECT cityHash64(event_id) AS id
            FROM ` + db + `.events
            WHERE ` + window + ` AND cityHash64(event_id) IN (` + repeated + `)
            GROUP BY id
            HAVING min(` + fp + `) != max(` + fp + `)
        )
    ) AS conflicting
FROM
(
    SELECT cityHash64(event_id) AS id, count() AS n
    FROM ` + db + `.events
    WHERE ` + window + `
    GROUP BY id
)`
}

// The one-row-per-event idiom of the catalogue's listing queries
// (queries/README.md, "One event, several deliveries"), for SQL built in
// Go (the investigation page). Over rows with the columns event_id,
// chain, seq and delivery: CopiesWindow names the window of one event's
// copies, FirstCopy keeps the copy in the lexically first chain (then the
// lowest seq), and DeliveredVia lists the sorted paths of every copy.
// They go together in one SELECT: DeliveredVia in its columns, then
// CopiesWindow and FirstCopy after its WHERE.
const (
	CopiesWindow = "WINDOW copies AS (PARTITION BY event_id ORDER BY chain, seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)"
	FirstCopy    = "QUALIFY row_number() OVER copies = 1"
	DeliveredVia = "arrayStringConcat(arraySort(groupUniqArray(delivery) OVER copies), ',')"
)
