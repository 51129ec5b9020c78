package archive_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/custody-audit/custody/ingest/archive"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		name, head, path string
		want             archive.Format
		wantErr          error
	}{
		{"avro magic", "Obj\x01\x04\x14avro.codec", "x/0/2026/11/27/10/00/00.avro", archive.FormatCapture, nil},
		{"json lines record", `{"time":"2026-11-27T10:00:00Z","category":"kube-audit"}` + "\n", "PT1H.json", archive.FormatJSONLines, nil},
		{"old records blob by name", "{\n  \"records\": [", "insights-activity-logs/resourceId=/SUBSCRIPTIONS/S/y=2018/m=10/d=31/h=23/m=00/PT1H.json", archive.FormatRecords, nil},
		{"records under insights container", `{"records":[]}`, "insights-logs-kube-audit/x.json", archive.FormatRecords, nil},
		{"records body file", `{"records":[{}]}`, "/tmp/dump/body-0001.json", archive.FormatEventHubs, nil},
		{"bom and whitespace", "\xef\xbb\xbf \n{\"records\":[]}", "bodies.jsonl", archive.FormatEventHubs, nil},
		{"empty", "", "PT1H.json", archive.FormatJSONLines, nil},
		{"cut inside first key", `{"reco`, "a.json", archive.FormatJSONLines, nil},
		{"text", "hello", "a.txt", "", archive.ErrUnrecognized},
		{"json array", `[{"a":1}]`, "a.json", "", archive.ErrUnrecognized},
		{"gzip", "\x1f\x8b\x08\x00", "PT1H.json.gz", "", archive.ErrUnrecognized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := archive.Detect([]byte(tc.head), tc.path)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("Detect = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]archive.Format{"": archive.FormatAuto, "AUTO": archive.FormatAuto, " capture ": archive.FormatCapture, "records": archive.FormatRecords, "jsonlines": archive.FormatJSONLines, "eventhubs": archive.FormatEventHubs} {
		if got, err := archive.ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := archive.ParseFormat("avro"); !errors.Is(err, archive.ErrBadConfig) {
		t.Errorf("ParseFormat(avro) err = %v", err)
	}
}

func TestPathHour(t *testing.T) {
	h := func(y, m, d, hh int) time.Time { return time.Date(y, time.Month(m), d, hh, 0, 0, 0, time.UTC) }
	tests := []struct {
		path string
		want time.Time
		ok   bool
	}{
		{"insights-logs-kube-audit/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/A/y=2026/m=11/d=27/h=10/m=00/PT1H.json", h(2026, 11, 27, 10), true},
		{"insights-activity-logs/resourceId=/SUBSCRIPTIONS/S/y=2020/m=06/d=08/h=18/m=00/PT1H.json", h(2020, 6, 8, 18), true},
		{"resourceId=/X/y=2016/m=8/d=2/h=3/m=00/PT1H.json", h(2016, 8, 2, 3), true},
		{"windturbinecapture/ns/hub/1/2017/08/31/19/11/45.avro", h(2017, 8, 31, 19), true},
		{"ns/hub/1/2017/08/31/19/11/45", h(2017, 8, 31, 19), true},
		{`C:\data\ns\hub\0\2024\02\29\23\59\59.avro`, h(2024, 2, 29, 23), true},
		{"ns/hub/1/2017/02/30/19/11/45.avro", time.Time{}, false},
		{"x/y=2026/m=13/d=01/h=00/m=00/PT1H.json", time.Time{}, false},
		{"x/y=2026/m=11/d=27/h=24/m=00/PT1H.json", time.Time{}, false},
		{"bodies/many.jsonl", time.Time{}, false},
		{"a/b/c/d/e/f", time.Time{}, false},
	}
	for _, tc := range tests {
		got, ok := archive.PathHour(tc.path)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("PathHour(%q) = %s, %v; want %s, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTimeRangeOverlaps(t *testing.T) {
	at := func(hh, mm int) time.Time { return time.Date(2026, 11, 27, hh, mm, 0, 0, time.UTC) }
	r := archive.TimeRange{From: at(10, 30), To: at(12, 0)}
	for hour, want := range map[int]bool{9: false, 10: true, 11: true, 12: false} {
		if got := r.Overlaps(at(hour, 0)); got != want {
			t.Errorf("hour %d: %v, want %v", hour, got, want)
		}
	}
	if !(archive.TimeRange{}).Overlaps(at(0, 0)) || !(archive.TimeRange{}).IsZero() {
		t.Errorf("zero range must select everything")
	}
}

func TestCaptureSchemaMatchesDocumentation(t *testing.T) {
	doc, err := avro.Parse(string(readTestdata(t, "msdocs-explore-captured-avro-files-schema.avsc.json")))
	if err != nil {
		t.Fatal(err)
	}
	ours, err := avro.Parse(archive.CaptureSchema)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Fingerprint() != ours.Fingerprint() {
		t.Fatalf("CaptureSchema differs from the documented schema:\n%s\n%s", doc.String(), ours.String())
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5==;EndpointSuffix=core.windows.net",
			"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=REDACTED;EndpointSuffix=core.windows.net"},
		{"GET https://a.blob.core.windows.net/c?sv=2024-01-01&sp=rl&sig=abc%2Bdef%3D&se=x failed",
			"GET https://a.blob.core.windows.net/c?sv=2024-01-01&sp=rl&sig=REDACTED&se=x failed"},
		{"Endpoint=sb://n/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t", "Endpoint=sb://n/;SharedAccessKeyName=k;SharedAccessKey=REDACTED"},
		{"Authorization: Bearer eyJ0eXAi.x.y", "Authorization: Bearer REDACTED"},
		{"nothing here", "nothing here"},
	}
	for _, tc := range tests {
		if got := archive.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
	if got := archive.RedactURL("https://a.blob.core.windows.net/c?sv=1&sig=zzz"); strings.Contains(got, "zzz") || !strings.HasPrefix(got, "https://a.blob.core.windows.net/c?") {
		t.Errorf("RedactURL = %q", got)
	}
}
