package bundle

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/normalize"
	"github.com/custody-audit/custody/storage/trail"
)

// ocsfLine is appendOCSFLine with fresh scratch space.
func ocsfLine(r *trail.Row, record []byte) ([]byte, error) {
	var w normalize.OCSFWriter
	var scratch []byte
	return appendOCSFLine(&w, &scratch, nil, r, record)
}

// marshalOCSFLine is the reference: the row's OCSF event (normalize's,
// which its tests hold to json.Marshal of the document as maps) read back
// as raw members, the record added under unmapped as a json.RawMessage, and the
// whole written by json.Marshal, which appendOCSFLine must reproduce byte
// for byte.
func marshalOCSFLine(t *testing.T, r *trail.Row, record []byte) []byte {
	t.Helper()
	var doc, um map[string]json.RawMessage
	if err := json.Unmarshal(normalize.AppendOCSF(nil, listsNotNil(&r.Event)), &doc); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc["unmapped"], &um); err != nil {
		t.Fatal(err)
	}
	um[ocsfRecordKey] = json.RawMessage(record)
	var err error
	if doc["unmapped"], err = json.Marshal(um); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestOCSFLineMatchesEncodingJSON(t *testing.T) {
	tricky := "<b>&amp; \"q\" back\\ \b\f\n\r\t \x00\x1f\x7f ü \u2028\u2029 \xff\xfe end"
	base := event.Event{ID: "id-1", Time: time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC), ReceivedTime: time.Date(2026, 11, 27, 10, 0, 1, 0, time.UTC),
		Service: event.ServiceAKS, Category: "kube-audit", SourceKind: "eventhubs", SourceFormat: "resource-log", SourcePosition: "0/1",
		TenantID: "t", SubscriptionID: "s", ResourceGroup: "rg", Provider: "Microsoft.ContainerService", ResourceType: "managedClusters",
		ResourceName: "aks1", ResourceID: "/subscriptions/s/x", Actor: event.Actor{Name: "alice", ObjectID: "oid", Type: event.ActorUser, Groups: []string{"g<1>", tricky}},
		SourceIP: netip.MustParseAddr("203.0.113.7"), UserAgent: "kubectl & co", Action: "k8s:pods/exec:create", ActionClass: event.ClassExec,
		Target:  event.Target{Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web", Image: "img"},
		Outcome: event.OutcomeSuccess, StatusCode: 101, Reason: tricky, CorrelationID: "c", RequestID: "r",
		Tags: []string{event.TagExecIntoContainer}, Attributes: map[string]string{"k8s.stage": "ResponseComplete", "tab\tkey": tricky, "<k>": "&"},
		Raw: []byte(`{"a":"` + tricky + `"}`), RawFormat: "json"}
	login := base
	login.ActionClass, login.Action, login.Tags, login.Attributes, login.Actor.Groups = event.ClassLogin, "acr:login", nil, nil, nil
	acr := base
	acr.Service, acr.Target, acr.StatusCode, acr.Outcome = event.ServiceACR, event.Target{Repository: "repo", Digest: "sha256:x"}, 0, event.OutcomeFailure
	bare := event.Event{Time: time.Unix(0, 0).UTC(), ReceivedTime: time.Unix(0, 0).UTC()}
	for name, e := range map[string]event.Event{"exec": base, "login": login, "acr": acr, "bare": bare} {
		t.Run(name, func(t *testing.T) {
			r := trail.Row{Chain: "aks/0", Seq: 3, Event: e}
			var enc jsonEncoder
			record := enc.appendRow(nil, &r)
			want := marshalOCSFLine(t, &r, record)
			got, err := ocsfLine(&r, record)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("OCSF line differs from encoding/json's:\ngot  %s\nwant %s", got, want)
			}
		})
	}
}

func TestOCSFRecordIn(t *testing.T) {
	cases := []struct{ line, want string }{
		{`{"a":1,"unmapped":{"custody_record":{"x":"}\"{","y":[1,{"z":"\\"}]},"k":"v"}}`, `{"x":"}\"{","y":[1,{"z":"\\"}]}`},
		{`{"unmapped":{"custody_record":{}}}`, `{}`},
		{`{"note":"\"custody_record\":{\"fake\":1}","unmapped":{"custody_record":{"real":2}}}`, `{"real":2}`},
		{`{"unmapped":{"custody_record":{"open":"`, ""},
		{`{"unmapped":{"other":{}}}`, ""},
	}
	for _, c := range cases {
		got, ok := ocsfRecordIn([]byte(c.line))
		if string(got) != c.want || ok != (c.want != "") {
			t.Errorf("ocsfRecordIn(%s) = %s, %v; want %s", c.line, got, ok, c.want)
		}
	}
}

// TestJSONStringForms pins the export-v1 string form (jsonl lines) beside
// the encoding/json one (OCSF lines): one escaper writes both.
func TestJSONStringForms(t *testing.T) {
	in := "<&> \"\\ \b\f\n\r\t \x00 ü \u2028"
	if got, want := string(appendJSONString(nil, in)), `"<&> \"\\ \u0008\u000c\n\r\t \u0000 ü \u2028"`; got != want {
		t.Errorf("export-v1 form %s, want %s", got, want)
	}
	if got, want := string(normalize.AppendJSONString(nil, in, normalize.EscapeHTML)), `"\u003c\u0026\u003e \"\\ \b\f\n\r\t \u0000 ü \u2028"`; got != want {
		t.Errorf("encoding/json form %s, want %s", got, want)
	}
}
