package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

type chainStatus struct {
	Chain          string `json:"chain"`
	Events         uint64 `json:"events"`
	HeadSeq        uint64 `json:"head_seq"`
	HeadHash       string `json:"head_hash"`
	LastEvent      string `json:"last_event_time"`
	CheckpointSize uint64 `json:"checkpoint_size"`
	CheckpointAt   string `json:"checkpoint_at"`
	Quarantined    uint64 `json:"quarantined"`
}

type lastVerify struct {
	At     string `json:"at"`
	Actor  string `json:"actor"`
	Result string `json:"result"`
	Detail string `json:"detail"`
	Source string `json:"source"` // custody_log or this server
}

func (s *Server) handleIntegrity(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	var chains []chainStatus
	err := engine.Each(ctx, s.eng, `SELECT e.chain, e.n, e.last_seq, lower(hex(e.head)), toString(e.last_time), ifNull(c.size, 0), ifNull(toString(c.at), ''), ifNull(q.n, 0)
FROM (SELECT toString(chain) AS chain, count() AS n, max(seq) AS last_seq, argMax(hash, seq) AS head, max(event_time) AS last_time FROM `+s.db+`.events GROUP BY chain) AS e
LEFT JOIN (SELECT toString(chain) AS chain, max(tree_size) AS size, max(created_at) AS at FROM `+s.db+`.checkpoints GROUP BY chain) AS c ON c.chain = e.chain
LEFT JOIN (SELECT toString(chain) AS chain, count() AS n FROM `+s.db+`.quarantine GROUP BY chain) AS q ON q.chain = e.chain
ORDER BY e.chain LIMIT 100000 SETTINGS join_use_nulls = 1`, nil, func(rows engine.Rows) error {
		var c chainStatus
		if err := rows.Scan(&c.Chain, &c.Events, &c.HeadSeq, &c.HeadHash, &c.LastEvent, &c.CheckpointSize, &c.CheckpointAt, &c.Quarantined); err != nil {
			return err
		}
		chains = append(chains, c)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read chain heads: %w", err)
	}
	if chains == nil {
		chains = []chainStatus{}
	}
	out := map[string]any{"engine": s.eng.Kind(), "database": s.db, "chains": chains, "now": formatEventTime(s.now())}
	var lastCP time.Time
	var n uint64
	err = engine.Each(ctx, s.eng, "SELECT max(created_at), count() FROM "+s.db+".checkpoints", nil, func(rows engine.Rows) error {
		return rows.Scan(&lastCP, &n)
	})
	if err != nil {
		return fmt.Errorf("read last checkpoint: %w", err)
	}
	if n > 0 {
		out["last_checkpoint"] = formatEventTime(lastCP)
		out["last_checkpoint_age_seconds"] = int64(s.now().Sub(lastCP).Seconds())
	}
	lv, err := s.lastRecordedVerify(ctx)
	if err != nil {
		return err
	}
	if mine := s.verify.lastFinished(); mine != nil && (lv == nil || mine.At > lv.At) {
		lv = mine
	}
	out["last_verify"] = lv
	if j := s.verify.running(); j != nil {
		out["running_verify"] = j.id
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// lastRecordedVerify is the newest verification the store recorded: a
// verify_runs row (custody verify, the collector's periodic verify), or
// on a store older than that table the custody log's newest verify.
func (s *Server) lastRecordedVerify(ctx context.Context) (*lastVerify, error) {
	run, err := s.opts.Store.LastVerify(ctx)
	if err != nil {
		return nil, err
	}
	if run != nil {
		kinds := make([]string, 0, len(run.Findings))
		for k, n := range run.Findings {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, n))
		}
		slices.Sort(kinds)
		return &lastVerify{At: formatEventTime(run.FinishedAt), Actor: run.Actor, Result: run.Result, Source: "verify_runs, " + run.Trigger,
			Detail: fmt.Sprintf("chains=%d rows=%d checkpoints=%d errors=%d warnings=%d %s", run.Chains, run.Rows, run.Checkpoints, run.Errors, run.Warnings, strings.Join(kinds, " "))}, nil
	}
	var lv *lastVerify
	err = engine.Each(ctx, s.eng, "SELECT at, actor, detail, toString(result) FROM "+s.db+".custody_log WHERE action = 'verify' ORDER BY at DESC LIMIT 1", nil, func(rows engine.Rows) error {
		var at time.Time
		v := lastVerify{Source: "custody_log"}
		if err := rows.Scan(&at, &v.Actor, &v.Detail, &v.Result); err != nil {
			return err
		}
		v.At = formatEventTime(at)
		lv = &v
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read last verify: %w", err)
	}
	return lv, nil
}

// verifyJob is one verify started from the page.
type verifyJob struct {
	id      string
	n       uint64 // start order
	started time.Time
	cancel  context.CancelFunc

	mu       sync.Mutex
	done     uint64
	total    uint64
	finished time.Time
	report   *storage.VerifyReport
	err      string
}

type verifyJobs struct {
	mu   sync.Mutex
	jobs map[string]*verifyJob
	last *verifyJob // newest
	n    uint64     // jobs started
	wg   sync.WaitGroup
}

func newVerifyJobs() *verifyJobs { return &verifyJobs{jobs: map[string]*verifyJob{}} }

func (v *verifyJobs) running() *verifyJob {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.last != nil {
		v.last.mu.Lock()
		defer v.last.mu.Unlock()
		if v.last.finished.IsZero() {
			return v.last
		}
	}
	return nil
}

func (v *verifyJobs) lastFinished() *lastVerify {
	v.mu.Lock()
	defer v.mu.Unlock()
	var best *verifyJob
	for _, j := range v.jobs {
		j.mu.Lock()
		if !j.finished.IsZero() && (best == nil || j.n > best.n) {
			best = j
		}
		j.mu.Unlock()
	}
	if best == nil {
		return nil
	}
	best.mu.Lock()
	defer best.mu.Unlock()
	lv := &lastVerify{At: formatEventTime(best.finished), Actor: "custody serve", Source: "this server"}
	switch {
	case best.err != "":
		lv.Result, lv.Detail = "error", best.err
	case best.report.OK():
		lv.Result = "ok"
	default:
		lv.Result = "failed"
	}
	if best.report != nil {
		lv.Detail = fmt.Sprintf("chains=%d rows=%d checkpoints=%d findings=%d", best.report.Chains, best.report.Rows, best.report.Checkpoints, len(best.report.Findings))
	}
	return lv
}

func (v *verifyJobs) cancelAll() {
	v.mu.Lock()
	for _, j := range v.jobs {
		j.cancel()
	}
	v.mu.Unlock()
	v.wg.Wait()
}

// maxJobs bounds the finished verifies kept for polling.
const maxJobs = 16

func (s *Server) handleVerifyStart(w http.ResponseWriter, r *http.Request) error {
	if s.verify.running() != nil {
		return &apiError{errConflict, "a verify is already running"}
	}
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	// The verify outlives the request that started it; it ends when it
	// finishes or the server stops.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	j := &verifyJob{id: hex.EncodeToString(b), started: s.now(), cancel: cancel}
	v := s.verify
	v.mu.Lock()
	if len(v.jobs) >= maxJobs {
		var oldest *verifyJob
		for _, o := range v.jobs {
			if o != v.last && (oldest == nil || o.started.Before(oldest.started)) {
				oldest = o
			}
		}
		if oldest != nil {
			delete(v.jobs, oldest.id)
		}
	}
	v.n++
	j.n = v.n
	v.jobs[j.id] = j
	v.last = j
	v.mu.Unlock()
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		defer cancel()
		rep, err := s.opts.Store.Verify(ctx, storage.VerifyOptions{Verifier: s.opts.Verifier, CheckpointDir: s.opts.CheckpointDir,
			Progress: func(done, total uint64) {
				j.mu.Lock()
				j.done, j.total = done, total
				j.mu.Unlock()
			}})
		j.mu.Lock()
		j.finished, j.report = s.now(), rep
		if err != nil {
			j.err = err.Error()
		}
		j.mu.Unlock()
		// The page's verify is not in the custody log: this server
		// never writes to the store. It is in the server's log.
		if err != nil {
			s.log.ErrorContext(ctx, "verify from the web page failed", "job", j.id, "err", err)
		} else {
			s.log.InfoContext(ctx, "verify from the web page", "job", j.id, "ok", rep.OK(), "chains", rep.Chains, "rows", rep.Rows, "findings", len(rep.Findings))
		}
	}()
	writeJSON(w, http.StatusAccepted, map[string]string{"id": j.id})
	return nil
}

func (s *Server) handleVerifyStatus(w http.ResponseWriter, r *http.Request) error {
	s.verify.mu.Lock()
	j := s.verify.jobs[r.PathValue("id")]
	s.verify.mu.Unlock()
	if j == nil {
		return &apiError{errNotFound, "no such verify"}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[string]any{"id": j.id, "started": formatEventTime(j.started), "done": j.done, "total": j.total, "finished": !j.finished.IsZero()}
	if !j.finished.IsZero() {
		out["ended"] = formatEventTime(j.finished)
		if j.err != "" {
			out["error"] = j.err
		}
		if j.report != nil {
			out["ok"] = j.report.OK()
			findings := j.report.Findings
			if findings == nil {
				findings = []storage.Finding{}
			}
			if len(findings) > 1000 {
				findings = findings[:1000]
			}
			out["report"] = map[string]any{"chains": j.report.Chains, "rows": j.report.Rows, "checkpoints": j.report.Checkpoints,
				"findings": findings, "finding_count": len(j.report.Findings), "elapsed_ms": j.report.Elapsed.Milliseconds()}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// eachQuarantine reports quarantined records by chain and reason.
func eachQuarantine(ctx context.Context, s *Server, fn func(chain, reason string, n uint64)) error {
	err := engine.Each(ctx, s.eng, "SELECT toString(chain), reason, count() FROM "+s.db+".quarantine GROUP BY chain, reason ORDER BY chain, reason LIMIT 1000", nil, func(r engine.Rows) error {
		var c, reason string
		var n uint64
		if err := r.Scan(&c, &reason, &n); err != nil {
			return err
		}
		fn(c, reason, n)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read quarantine: %w", err)
	}
	return nil
}
