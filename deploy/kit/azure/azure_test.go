package azure_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/custody-audit/custody/normalize"
)

const (
	templatePath   = "../../azure/azuredeploy.json"
	parametersPath = "../../azure/azuredeploy.parameters.example.json"

	groupSchema        = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
	subscriptionSchema = "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#"
	parametersSchema   = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
)

// apiVersions pins every resource type the template may deploy and the API
// version it is written against. A new type or version is a reviewed change
// here.
var apiVersions = map[string]string{
	"Microsoft.EventHub/namespaces":                          "2024-01-01",
	"Microsoft.EventHub/namespaces/eventhubs":                "2024-01-01",
	"Microsoft.EventHub/namespaces/eventhubs/consumergroups": "2024-01-01",
	"Microsoft.EventHub/namespaces/authorizationRules":       "2024-01-01",
	"Microsoft.Storage/storageAccounts":                      "2023-05-01",
	"Microsoft.Insights/diagnosticSettings":                  "2021-05-01-preview",
	"Microsoft.Authorization/roleAssignments":                "2022-04-01",
	"Microsoft.Resources/deployments":                        "2022-09-01",
}

// builtInRoles are the Azure built-in role definition ids the collector
// gets: read-only data access, nothing more.
var builtInRoles = map[string]string{
	"eventHubsDataReceiver": "a638d3c7-ab3a-418d-83e6-5f17a39d4fde", // Azure Event Hubs Data Receiver
	"logAnalyticsReader":    "73c42c96-874c-492b-b04d-ab87d138a893", // Log Analytics Reader
	"storageBlobDataReader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", // Storage Blob Data Reader
}

// Keys ARM accepts at the top of a template and on a resource.
var (
	templateKeys = set("$schema", "contentVersion", "apiProfile", "metadata", "parameters", "functions", "variables", "resources", "outputs")
	resourceKeys = set("condition", "type", "apiVersion", "name", "comments", "location", "dependsOn", "tags", "sku", "kind",
		"scope", "copy", "plan", "properties", "resources", "identity", "zones", "subscriptionId", "resourceGroup", "extendedLocation", "managedBy")
	parameterKeys = set("type", "defaultValue", "allowedValues", "minValue", "maxValue", "minLength", "maxLength", "metadata")
	paramTypes    = set("string", "securestring", "int", "bool", "object", "secureObject", "array")
	// armFunctions are the template functions the template may call.
	armFunctions = set("parameters", "variables", "resourceId", "subscriptionResourceId", "resourceGroup", "subscription",
		"format", "concat", "split", "last", "length", "copyIndex", "if", "empty", "not", "and", "or", "equals", "null", "guid",
		"take", "uniqueString", "createArray", "environment", "toLower")
)

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

type obj = map[string]any

// load decodes path, failing on syntax errors and on duplicate keys (which
// encoding/json would silently resolve to the last one, and ARM rejects).
func load(t *testing.T, path string) obj {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := noDuplicateKeys(json.NewDecoder(bytes.NewReader(b)), "$"); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var m obj
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

func noDuplicateKeys(d *json.Decoder, path string) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil {
				return err
			}
			key := k.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q at %s", key, path)
			}
			seen[key] = true
			if err := noDuplicateKeys(d, path+"."+key); err != nil {
				return err
			}
		}
		_, err = d.Token()
	case json.Delim('['):
		for i := 0; d.More(); i++ {
			if err := noDuplicateKeys(d, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = d.Token()
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// scope is one template and what its expressions reference.
type scope struct {
	name     string
	tmpl     obj
	paramRef map[string]bool
	varRef   map[string]bool
}

var (
	refRE  = regexp.MustCompile(`\b(parameters|variables)\('([^']*)'\)`)
	funcRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9]*)\(`)
)

// walk visits every string of v in this template's scope. Nested templates
// evaluated in their own (inner) scope are returned, not walked.
func walk(t *testing.T, v any, where string, visit func(s, where string)) (inner []obj) {
	switch x := v.(type) {
	case string:
		visit(x, where)
	case []any:
		for i, e := range x {
			inner = append(inner, walk(t, e, fmt.Sprintf("%s[%d]", where, i), visit)...)
		}
	case obj:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			if k == "template" && innerScope(x) {
				inner = append(inner, x)
				continue
			}
			inner = append(inner, walk(t, x[k], where+"."+k, visit)...)
		}
	}
	return inner
}

// innerScope reports whether deployment properties p evaluate their
// template in the template's own scope.
func innerScope(p obj) bool {
	eo, _ := p["expressionEvaluationOptions"].(obj)
	return eo != nil && eo["scope"] == "inner"
}

// checkExpression checks an ARM expression's shape: closed brackets,
// balanced parentheses and quotes, known functions.
func checkExpression(t *testing.T, s, where string) {
	t.Helper()
	if !strings.HasPrefix(s, "[") || strings.HasPrefix(s, "[[") {
		return
	}
	if !strings.HasSuffix(s, "]") {
		t.Errorf("%s: expression %q does not end with ]", where, s)
		return
	}
	depth, quoted := 0, false
	var unquoted strings.Builder
	for _, r := range s[1 : len(s)-1] {
		switch {
		case r == '\'':
			quoted = !quoted
		case quoted:
		case r == '(':
			depth++
		case r == ')':
			depth--
			if depth < 0 {
				t.Errorf("%s: expression %q closes a parenthesis it did not open", where, s)
				return
			}
		}
		if !quoted && r != '\'' {
			unquoted.WriteRune(r)
		}
	}
	if depth != 0 || quoted {
		t.Errorf("%s: expression %q has unbalanced parentheses or quotes", where, s)
	}
	for _, m := range funcRE.FindAllStringSubmatch(unquoted.String(), -1) {
		if !armFunctions[m[1]] {
			t.Errorf("%s: expression %q calls %s, not in the test's list of ARM functions", where, s, m[1])
		}
	}
}

// checkTemplate checks one template (the file or a nested one) and returns
// its nested inner-scope deployments' properties.
func checkTemplate(t *testing.T, name string, tmpl obj, wantSchema string) []obj {
	t.Helper()
	for k := range tmpl {
		if !templateKeys[k] {
			t.Errorf("%s: unknown top-level key %q", name, k)
		}
	}
	for _, k := range []string{"$schema", "contentVersion", "resources"} {
		if _, ok := tmpl[k]; !ok {
			t.Errorf("%s: missing %q", name, k)
		}
	}
	if tmpl["$schema"] != wantSchema {
		t.Errorf("%s: $schema %v, want %s", name, tmpl["$schema"], wantSchema)
	}
	if cv, _ := tmpl["contentVersion"].(string); !regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`).MatchString(cv) {
		t.Errorf("%s: contentVersion %q is not n.n.n.n", name, cv)
	}

	params, _ := tmpl["parameters"].(obj)
	for pname, pv := range params {
		p := pv.(obj)
		for k := range p {
			if !parameterKeys[k] {
				t.Errorf("%s: parameter %s: unknown key %q", name, pname, k)
			}
		}
		typ, _ := p["type"].(string)
		if !paramTypes[typ] {
			t.Errorf("%s: parameter %s: type %q", name, pname, typ)
		}
		if d, ok := p["defaultValue"]; ok {
			if err := typeMatches(typ, d); err != nil {
				t.Errorf("%s: parameter %s: defaultValue: %v", name, pname, err)
			}
			if av, ok := p["allowedValues"].([]any); ok && !slices.Contains(av, d) {
				t.Errorf("%s: parameter %s: defaultValue %v not among allowedValues %v", name, pname, d, av)
			}
		}
	}
	vars, _ := tmpl["variables"].(obj)

	paramRef, varRef := map[string]bool{}, map[string]bool{}
	visit := func(s, where string) {
		checkExpression(t, s, name+where)
		if !strings.HasPrefix(s, "[") {
			return
		}
		for _, m := range refRE.FindAllStringSubmatch(s, -1) {
			if m[1] == "parameters" {
				paramRef[m[2]] = true
				if _, ok := params[m[2]]; !ok {
					t.Errorf("%s%s: parameter %q is not defined", name, where, m[2])
				}
			} else {
				varRef[m[2]] = true
				if _, ok := vars[m[2]]; !ok {
					t.Errorf("%s%s: variable %q is not defined", name, where, m[2])
				}
			}
		}
	}
	var inner []obj
	for _, k := range []string{"parameters", "variables", "resources", "outputs"} {
		inner = append(inner, walk(t, tmpl[k], "."+k, visit)...)
	}
	for p := range params {
		if !paramRef[p] {
			t.Errorf("%s: parameter %q is defined but never used", name, p)
		}
	}
	for v := range vars {
		if !varRef[v] {
			t.Errorf("%s: variable %q is defined but never used", name, v)
		}
	}

	// Resources: required keys, pinned types and versions, dependencies
	// on resources of this template.
	resources, _ := tmpl["resources"].([]any)
	declared := map[string]bool{}
	for _, rv := range resources {
		declared[rv.(obj)["type"].(string)] = true
	}
	for i, rv := range resources {
		r := rv.(obj)
		where := fmt.Sprintf("%s: resources[%d] %v", name, i, r["type"])
		for k := range r {
			if !resourceKeys[k] {
				t.Errorf("%s: unknown key %q", where, k)
			}
		}
		for _, k := range []string{"type", "apiVersion", "name"} {
			if _, ok := r[k]; !ok {
				t.Errorf("%s: missing %q", where, k)
			}
		}
		typ, _ := r["type"].(string)
		if want, ok := apiVersions[typ]; !ok {
			t.Errorf("%s: resource type not in the pinned list", where)
		} else if r["apiVersion"] != want {
			t.Errorf("%s: apiVersion %v, pinned %s", where, r["apiVersion"], want)
		}
		deps, _ := r["dependsOn"].([]any)
		for _, d := range deps {
			m := regexp.MustCompile(`^\[resourceId\('([^']+)'`).FindStringSubmatch(d.(string))
			if m == nil {
				t.Errorf("%s: dependsOn %q is not a resourceId() of this template", where, d)
			} else if !declared[m[1]] {
				t.Errorf("%s: depends on %s, which this template does not declare", where, m[1])
			}
		}
	}
	return inner
}

// typeMatches reports whether a literal value fits an ARM parameter type.
// Expressions fit any type.
func typeMatches(typ string, v any) error {
	if s, ok := v.(string); ok && strings.HasPrefix(s, "[") && !strings.HasPrefix(s, "[[") {
		return nil
	}
	ok := false
	switch typ {
	case "string", "securestring":
		_, ok = v.(string)
	case "int":
		f, isNum := v.(float64)
		ok = isNum && f == float64(int64(f))
	case "bool":
		_, ok = v.(bool)
	case "array":
		_, ok = v.([]any)
	case "object", "secureObject":
		_, ok = v.(obj)
	}
	if !ok {
		return fmt.Errorf("%v (%T) is not a %s", v, v, typ)
	}
	return nil
}

// nestedDeployments returns the deployments resources of tmpl.
func nestedDeployments(tmpl obj) []obj {
	var out []obj
	for _, rv := range tmpl["resources"].([]any) {
		if r := rv.(obj); r["type"] == "Microsoft.Resources/deployments" {
			out = append(out, r)
		}
	}
	return out
}

// TestTemplateStructure checks the template file and every nested
// template: keys, parameters and variables defined and used, pinned
// resource types and versions, parameters passed to nested templates, and
// that each nested deployment targets the scope its template is written
// for (a resource group, or the subscription for the Activity Log).
func TestTemplateStructure(t *testing.T) {
	tmpl := load(t, templatePath)
	checkTemplate(t, "azuredeploy.json", tmpl, groupSchema)
	deps := nestedDeployments(tmpl)
	if len(deps) != 4 {
		t.Fatalf("%d nested deployments, want 4 (AKS, ACR, Activity Log, Log Analytics role)", len(deps))
	}
	for _, d := range deps {
		name, _ := d["name"].(string)
		props := d["properties"].(obj)
		if !innerScope(props) {
			t.Errorf("deployment %s: nested template must use the inner expression scope", name)
		}
		if props["mode"] != "Incremental" {
			t.Errorf("deployment %s: mode %v, want Incremental (Complete would delete whatever else is in the target)", name, props["mode"])
		}
		inner := props["template"].(obj)
		schema, _ := inner["$schema"].(string)
		switch schema {
		case subscriptionSchema:
			if _, ok := d["resourceGroup"]; ok {
				t.Errorf("deployment %s: a subscription template must not target a resource group", name)
			}
			if _, ok := d["location"]; !ok {
				t.Errorf("deployment %s: a subscription deployment needs a location", name)
			}
		case groupSchema:
			if _, ok := d["resourceGroup"]; !ok {
				t.Errorf("deployment %s: a resource-group template needs resourceGroup (else it lands in the Event Hub's)", name)
			}
		default:
			t.Errorf("deployment %s: nested $schema %q", name, schema)
		}
		if deeper := checkTemplate(t, "azuredeploy.json/"+name, inner, schema); len(deeper) > 0 {
			t.Errorf("deployment %s: nested deployments inside nested deployments", name)
		}
		passed, _ := props["parameters"].(obj)
		declared, _ := inner["parameters"].(obj)
		if !slices.Equal(slices.Sorted(maps.Keys(passed)), slices.Sorted(maps.Keys(declared))) {
			t.Errorf("deployment %s: passes parameters %v, template declares %v", name, slices.Sorted(maps.Keys(passed)), slices.Sorted(maps.Keys(declared)))
		}
	}
}

// TestDiagnosticCategories holds the template to normalize: the categories
// each diagnostic setting enables (with overlapping categories offered as
// alternatives of one parameter) are exactly normalize.DiagnosticCategories.
func TestDiagnosticCategories(t *testing.T) {
	tmpl := load(t, templatePath)
	params := tmpl["parameters"].(obj)
	vars := tmpl["variables"].(obj)

	got := map[string][]string{} // resource type ("" = Activity Log) -> categories
	alternatives := map[string][]string{}
	for _, d := range nestedDeployments(tmpl) {
		props := d["properties"].(obj)
		inner := props["template"].(obj)
		for _, rv := range inner["resources"].([]any) {
			r := rv.(obj)
			if r["type"] != "Microsoft.Insights/diagnosticSettings" {
				continue
			}
			rtype := ""
			if sc, ok := r["scope"].(string); ok {
				m := regexp.MustCompile(`^\[format\('([^']+)/\{0\}'`).FindStringSubmatch(sc)
				if m == nil {
					t.Fatalf("diagnostic setting scope %q: want format('<type>/{0}', ...)", sc)
				}
				rtype = m[1]
			}
			sp := r["properties"].(obj)
			if sp["eventHubAuthorizationRuleId"] == nil || sp["eventHubName"] == nil {
				t.Errorf("diagnostic setting on %q does not send to the event hub", rtype)
			}
			// logs: [parameters('logs')] -> the outer value -> a variable.
			logs := resolve(t, sp["logs"], props["parameters"].(obj), nil, nil)
			logs = resolve(t, logs, nil, params, vars)
			for _, lv := range logs.([]any) {
				l := lv.(obj)
				if l["enabled"] != true {
					t.Errorf("%s: category %v not enabled", rtype, l["category"])
				}
				cat := l["category"].(string)
				if m := refRE.FindStringSubmatch(cat); m != nil && m[1] == "parameters" {
					var alts []string
					for _, a := range params[m[2]].(obj)["allowedValues"].([]any) {
						alts = append(alts, a.(string))
					}
					sort.Strings(alts)
					alternatives[rtype] = append(alternatives[rtype], strings.Join(alts, "|"))
					got[rtype] = append(got[rtype], alts...)
					continue
				}
				got[rtype] = append(got[rtype], cat)
			}
		}
	}

	want := map[string][]string{}
	type groupKey struct{ resourceType, group string }
	groups := map[groupKey][]string{}
	for _, c := range normalize.DiagnosticCategories() {
		want[c.ResourceType] = append(want[c.ResourceType], c.Category)
		if c.Group != "" {
			k := groupKey{c.ResourceType, c.Group}
			groups[k] = append(groups[k], c.Category)
		}
	}
	wantAlts := map[string][]string{}
	for k, cats := range groups {
		sort.Strings(cats)
		wantAlts[k.resourceType] = append(wantAlts[k.resourceType], strings.Join(cats, "|"))
	}
	for _, m := range []map[string][]string{got, want, alternatives, wantAlts} {
		for k := range m {
			sort.Strings(m[k])
		}
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("template enables categories %v\nnormalize handles %v", got, want)
	}
	if !maps.EqualFunc(alternatives, wantAlts, slices.Equal) {
		t.Errorf("template offers alternatives %v, normalize's overlapping groups are %v", alternatives, wantAlts)
	}
}

// resolve follows a "[parameters('x')]" or "[variables('x')]" value one
// step: through passed (a nested deployment's parameter values) or
// through params/vars.
func resolve(t *testing.T, v any, passed obj, params, vars obj) any {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		return v
	}
	m := regexp.MustCompile(`^\[(parameters|variables)\('([^']+)'\)\]$`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("cannot resolve %q", s)
	}
	switch {
	case m[1] == "parameters" && passed != nil:
		return passed[m[2]].(obj)["value"]
	case m[1] == "variables" && vars != nil:
		return vars[m[2]]
	}
	t.Fatalf("cannot resolve %q here", s)
	return nil
}

// TestRoleAssignments checks that the collector gets exactly the three
// read roles, by built-in id, each on the narrowest scope.
func TestRoleAssignments(t *testing.T) {
	tmpl := load(t, templatePath)
	roles := tmpl["variables"].(obj)["roles"].(obj)
	gotRoles := map[string]string{}
	for k, v := range roles {
		gotRoles[k] = v.(string)
	}
	if !maps.Equal(gotRoles, builtInRoles) {
		t.Errorf("role ids %v, want the built-in %v", gotRoles, builtInRoles)
	}
	var assignments []obj
	collect := func(tm obj) {
		for _, rv := range tm["resources"].([]any) {
			if r := rv.(obj); r["type"] == "Microsoft.Authorization/roleAssignments" {
				assignments = append(assignments, r)
			}
		}
	}
	collect(tmpl)
	for _, d := range nestedDeployments(tmpl) {
		collect(d["properties"].(obj)["template"].(obj))
	}
	scopes := map[string]bool{}
	for _, a := range assignments {
		p := a["properties"].(obj)
		if p["principalType"] != "ServicePrincipal" {
			t.Errorf("role assignment %v: principalType %v, want ServicePrincipal (a managed or workload identity)", a["name"], p["principalType"])
		}
		if !strings.HasPrefix(p["roleDefinitionId"].(string), "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', ") {
			t.Errorf("role assignment %v: roleDefinitionId %v is not a built-in role id", a["name"], p["roleDefinitionId"])
		}
		sc, _ := a["scope"].(string)
		m := regexp.MustCompile(`^\[format\('([^']+)'`).FindStringSubmatch(sc)
		if m == nil {
			t.Errorf("role assignment %v: no resource scope (it would apply to the whole resource group)", a["name"])
			continue
		}
		scopes[m[1]] = true
	}
	want := set("Microsoft.EventHub/namespaces/{0}/eventhubs/{1}", "Microsoft.Storage/storageAccounts/{0}", "Microsoft.OperationalInsights/workspaces/{0}")
	if !maps.Equal(scopes, want) {
		t.Errorf("role assignment scopes %v, want %v", slices.Sorted(maps.Keys(scopes)), slices.Sorted(maps.Keys(want)))
	}
}

// TestParametersExample checks the example parameters file against the
// template: known names, required ones present, types, and resource ids of
// the shape the template splits.
func TestParametersExample(t *testing.T) {
	tmpl := load(t, templatePath)
	ex := load(t, parametersPath)
	if ex["$schema"] != parametersSchema {
		t.Errorf("$schema %v, want %s", ex["$schema"], parametersSchema)
	}
	params := tmpl["parameters"].(obj)
	given := ex["parameters"].(obj)
	for name, v := range given {
		p, ok := params[name].(obj)
		if !ok {
			t.Errorf("example sets %s, which the template does not declare", name)
			continue
		}
		val := v.(obj)["value"]
		if err := typeMatches(p["type"].(string), val); err != nil {
			t.Errorf("example %s: %v", name, err)
		}
		if av, ok := p["allowedValues"].([]any); ok && !slices.Contains(av, val) {
			t.Errorf("example %s: %v not among %v", name, val, av)
		}
	}
	for name, pv := range params {
		if _, hasDefault := pv.(obj)["defaultValue"]; !hasDefault {
			if _, ok := given[name]; !ok {
				t.Errorf("example lacks %s, which has no default", name)
			}
		}
	}
	idShape := map[string]string{
		"aksClusterIds":        normalize.ResourceTypeAKS,
		"containerRegistryIds": normalize.ResourceTypeACR,
	}
	for name, typ := range idShape {
		re := regexp.MustCompile(`^/subscriptions/[0-9a-f-]{36}/resourceGroups/[^/]+/providers/` + regexp.QuoteMeta(typ) + `/[^/]+$`)
		for _, id := range given[name].(obj)["value"].([]any) {
			if !re.MatchString(id.(string)) {
				t.Errorf("example %s: %q is not a %s resource id", name, id, typ)
			}
		}
	}
}

func TestMain(m *testing.M) {
	if _, err := os.Stat(filepath.FromSlash(templatePath)); err != nil {
		fmt.Fprintln(os.Stderr, "run from deploy/kit/azure:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
