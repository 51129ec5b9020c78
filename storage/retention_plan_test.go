package storage_test

import (
	"strings"
	"testing"
	"time"

	"github.com/custody-audit/custody/storage"
)

// TestPlanRetentionFrom decides retention from literal store statistics,
// without an engine: each case names the partitions that go and a reason
// each kept one must give.
func TestPlanRetentionFrom(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 12, 0, 0, 0, time.UTC) }
	now := day(2027, 6, 1)
	stat := func(part, chain, service string, first, last uint64, newest time.Time) storage.PartitionStat {
		return storage.PartitionStat{Partition: part, Chain: chain, Service: service, Category: "kube-audit",
			Rows: last - first + 1, FirstSeq: first, LastSeq: last, From: newest.AddDate(0, 0, -1), To: newest, Newest: newest}
	}
	cfg := storage.DefaultRetentionConfig() // 400 days
	hold := storage.Hold{ID: "hold-1", Kind: storage.HoldActor, Actor: "mallory", Reason: "case 7"}
	cases := []struct {
		name      string
		in        storage.RetentionInput
		cfg       *storage.RetentionConfig
		wantPurge string            // partitions purged, comma-separated
		wantWhy   map[string]string // partition -> a reason it gives
	}{
		{
			name: "old partitions go, the young one stays",
			in: storage.RetentionInput{Partitions: []storage.PartitionStat{
				stat("202501", "c", "aks", 1, 10, day(2025, 1, 31)),
				stat("202502", "c", "aks", 11, 20, day(2025, 2, 28)),
				stat("202606", "c", "aks", 21, 30, day(2026, 6, 30)),
			}, Checkpointed: map[string]uint64{"c": 30}},
			wantPurge: "202501,202502",
			wantWhy:   map[string]string{"202606": "retained: aks/kube-audit rows are kept until 2027-08-04 (min 400 days from 2026-06-30)"},
		},
		{
			name: "a legal hold keeps its partition and the ones after it in the chain",
			in: storage.RetentionInput{Partitions: []storage.PartitionStat{
				stat("202501", "c", "aks", 1, 10, day(2025, 1, 31)),
				stat("202502", "c", "aks", 11, 20, day(2025, 2, 28)),
			}, Checkpointed: map[string]uint64{"c": 20}, Holds: []storage.Hold{hold},
				HoldMatches: []storage.HoldMatch{{Hold: hold, Partition: "202501", Rows: 3}}},
			wantPurge: "",
			wantWhy: map[string]string{
				"202501": "held: hold-1 keeps 3 rows (actor mallory; case 7)",
				"202502": "blocked: chain c rows before seq 11 stay in partition 202501, so its rows here are not a prefix",
			},
		},
		{
			name: "rows not covered by a checkpoint stay",
			in: storage.RetentionInput{Partitions: []storage.PartitionStat{
				stat("202501", "c", "aks", 1, 10, day(2025, 1, 31)),
			}, Checkpointed: map[string]uint64{"c": 9}},
			wantWhy: map[string]string{"202501": "blocked: chain c rows up to 10 are not covered by a signed checkpoint (newest 9)"},
		},
		{
			name: "a chain with missing rows is damage",
			in: storage.RetentionInput{Partitions: []storage.PartitionStat{
				{Partition: "202501", Chain: "c", Service: "aks", Category: "kube-audit", Rows: 8, FirstSeq: 1, LastSeq: 10, From: day(2025, 1, 1), To: day(2025, 1, 31), Newest: day(2025, 1, 31)},
			}, Checkpointed: map[string]uint64{"c": 10}},
			wantWhy: map[string]string{"202501": "blocked: chain c has 8 rows for seq 1..10, not one contiguous run (run custody verify)"},
		},
		{
			name: "a longer rule keeps its service",
			cfg:  &storage.RetentionConfig{MinDays: 400, Rules: []storage.RetentionRule{{Service: "acr", MinDays: 900}}},
			in: storage.RetentionInput{Partitions: []storage.PartitionStat{
				stat("202501", "a", "acr", 1, 10, day(2025, 1, 31)),
				stat("202501", "c", "aks", 1, 10, day(2025, 1, 31)),
			}, Checkpointed: map[string]uint64{"a": 10, "c": 10}},
			wantWhy: map[string]string{"202501": "retained: acr/kube-audit rows are kept until 2027-07-20 (min 900 days from 2025-01-31)"},
		},
		{
			name: "quarantine: a time hold keeps the months it overlaps",
			in: storage.RetentionInput{
				Holds: []storage.Hold{{ID: "hold-t", Kind: storage.HoldTime, From: day(2025, 2, 10), To: day(2025, 2, 20), Reason: "case 8"}},
				Quarantine: []storage.QuarantineStat{
					{Partition: "202501", Rows: 2, From: day(2025, 1, 2), To: day(2025, 1, 3)},
					{Partition: "202502", Rows: 1, From: day(2025, 2, 2), To: day(2025, 2, 3)},
				}},
			wantPurge: "q202501",
			wantWhy:   map[string]string{"q202502": "held: hold-t overlaps this month of unparsed records"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cfg
			if tc.cfg != nil {
				c = *tc.cfg
			}
			tc.in.Now = now
			plan, err := storage.PlanRetentionFrom(c, tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var purged []string
			why := map[string][]string{}
			for _, pp := range plan.Partitions {
				if pp.Purge {
					purged = append(purged, pp.Partition)
				}
				why[pp.Partition] = pp.Reasons
			}
			for _, qp := range plan.Quarantine {
				if qp.Purge {
					purged = append(purged, "q"+qp.Partition)
				}
				why["q"+qp.Partition] = qp.Reasons
			}
			if got := strings.Join(purged, ","); got != tc.wantPurge {
				t.Errorf("purged %q, want %q (reasons %v)", got, tc.wantPurge, why)
			}
			for p, w := range tc.wantWhy {
				found := false
				for _, r := range why[p] {
					found = found || strings.HasPrefix(r, w)
				}
				if !found {
					t.Errorf("partition %s: reasons %q, want one starting %q", p, why[p], w)
				}
			}
		})
	}
}
