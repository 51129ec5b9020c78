package bundle

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/trail"
)

// randomOCSFRow draws a row that takes the OCSF encoder down one of its
// paths: every action class, outcome, actor type and service, each
// optional field empty or not, attributes that replace custody fields,
// and text that JSON escapes or that is not UTF-8.
func randomOCSFRow(seed uint64) trail.Row {
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pick := func(opts ...string) string { return opts[rnd.IntN(len(opts))] }
	text := func() string {
		return pick("", "", "a", "x<y>&z", "quote\"back\\slash", "nl\ncr\rtab\t", "\u2028\u2029", "ü 𝄞", "bad \xff\xfe", "/lead")
	}
	list := func() []string {
		var l []string
		for range rnd.IntN(3) {
			l = append(l, text())
		}
		return l
	}
	r := trail.Row{Chain: "c", Seq: rnd.Uint64N(1000) + 1}
	e := &r.Event
	e.ID, e.Category, e.SourceKind, e.SourceFormat, e.SourcePosition = text(), text(), text(), text(), text()
	if rnd.IntN(4) > 0 {
		e.Time = time.UnixMicro(rnd.Int64N(4e15) - 1e15).UTC()
	}
	if rnd.IntN(4) > 0 {
		e.ReceivedTime = time.UnixMicro(rnd.Int64N(4e15)).UTC()
	}
	e.Service = event.Service(pick("aks", "acr", "aci", "arm", "", "other"))
	e.TenantID, e.SubscriptionID, e.ResourceGroup = text(), text(), text()
	e.Provider, e.ResourceType, e.ResourceName, e.ResourceID = text(), text(), text(), text()
	e.Actor = event.Actor{Name: text(), ObjectID: text(), AppID: text(), ImpersonatedBy: text(), Groups: list(),
		Type: event.ActorType(pick("user", "service_principal", "managed_identity", "k8s_node", "system", "anonymous", "unknown", "", "odd"))}
	switch rnd.IntN(3) {
	case 0:
		e.SourceIP = netip.MustParseAddr("203.0.113.7")
	case 1:
		e.SourceIP = netip.MustParseAddr("2001:db8::7")
	}
	e.UserAgent = text()
	e.Action = pick("", "k8s:pods:create", "acr:push", "x:create", "login", text())
	e.ActionClass = event.ActionClass(pick("read", "write", "delete", "exec", "login", "credential_access", "permission_change", "config_change", "other", "", "odd"))
	e.Target = event.Target{APIGroup: text(), Namespace: text(), Name: text(), Tag: text(), Digest: text(), Container: text(), Image: text()}
	switch rnd.IntN(4) {
	case 0:
		e.Target.Resource = pick("pods", "secrets")
	case 1:
		e.Target.Repository = "team/app"
	case 2:
		e.Target.ContainerGroup = "cg1"
	}
	e.Outcome = event.Outcome(pick("success", "failure", "unknown", ""))
	e.StatusCode = []int32{0, 101, 404, -1}[rnd.IntN(4)]
	e.Reason, e.CorrelationID, e.RequestID = text(), text(), text()
	e.Tags = list()
	if rnd.IntN(2) == 0 {
		e.Attributes = map[string]string{}
		for range rnd.IntN(5) {
			e.Attributes[pick("k", "custody_action", "source_format", "source_position", "custody_action_class", "a<b", "zz", "custody_z", "")] = text()
		}
	}
	e.Raw = []byte(text())
	return r
}

// TestOCSFLineRandomRows checks appendOCSFLine against its reference
// (marshalOCSFLine) over rows that take every path of the OCSF event.
func TestOCSFLineRandomRows(t *testing.T) {
	rows := textRows()
	for seed := range uint64(3000) {
		rows = append(rows, randomOCSFRow(seed))
	}
	var enc jsonEncoder
	for i, r := range rows {
		checkOCSFLine(t, i, r, enc.appendRow(nil, &r))
	}
}

func checkOCSFLine(t *testing.T, i int, r trail.Row, record []byte) {
	t.Helper()
	got, err := ocsfLine(&r, record)
	if _, taken := r.Event.Attributes[ocsfRecordKey]; taken {
		if err == nil {
			t.Fatalf("row %d: an attribute takes the record key, and the line was written", i)
		}
		return
	}
	if err != nil {
		t.Fatalf("row %d: %v", i, err)
	}
	if want := marshalOCSFLine(t, &r, record); !bytes.Equal(got, want) {
		t.Fatalf("row %d (%+v):\n%s\nwant (encoding/json)\n%s", i, r.Event, got, want)
	}
}

// FuzzOCSFLine is TestOCSFLineRandomRows over random rows.
func FuzzOCSFLine(f *testing.F) {
	f.Add(uint64(1))
	f.Fuzz(func(t *testing.T, seed uint64) {
		var enc jsonEncoder
		r := randomOCSFRow(seed)
		checkOCSFLine(t, 0, r, enc.appendRow(nil, &r))
	})
}
