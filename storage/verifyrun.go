package storage

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/custody-audit/custody/storage/engine"
)

// VerifyRun is the record of one verification, a row of verify_runs
// (migration 0006): `custody status` and the web page show the newest.
type VerifyRun struct {
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Actor      string    `json:"actor"`
	Host       string    `json:"host"`
	// Trigger is who ran it: "cli" or "collector".
	Trigger string `json:"trigger"`
	// Chain is the chain verified, "" for all.
	Chain string `json:"chain"`
	// ContentFrom and ContentTo bound the content check (RFC 3339), ""
	// when unbounded.
	ContentFrom string `json:"content_from"`
	ContentTo   string `json:"content_to"`
	// Result is "ok" (no error findings) or "failed".
	Result              string            `json:"result"`
	Chains              uint64            `json:"chains"`
	Rows                uint64            `json:"rows"`
	Checkpoints         uint64            `json:"checkpoints"`
	ExternalCheckpoints uint64            `json:"external_checkpoints"`
	Errors              uint64            `json:"errors"`
	Warnings            uint64            `json:"warnings"`
	Findings            map[string]uint64 `json:"findings"` // by kind
}

// Verify results.
const (
	VerifyOK     = "ok"
	VerifyFailed = "failed"
)

// NewVerifyRun summarizes a report of a verification started at started
// with opts; trigger says who ran it ("cli", "collector").
func NewVerifyRun(started time.Time, trigger string, opts VerifyOptions, rep *VerifyReport) VerifyRun {
	r := VerifyRun{
		StartedAt: started.UTC(), FinishedAt: started.Add(rep.Elapsed).UTC(), Trigger: trigger, Chain: opts.Chain,
		Result: VerifyOK, Chains: uint64(rep.Chains), Rows: rep.Rows, Checkpoints: uint64(rep.Checkpoints),
		ExternalCheckpoints: uint64(rep.External), Findings: map[string]uint64{},
	}
	if !opts.From.IsZero() {
		r.ContentFrom = opts.From.UTC().Format(time.RFC3339Nano)
	}
	if !opts.To.IsZero() {
		r.ContentTo = opts.To.UTC().Format(time.RFC3339Nano)
	}
	for _, f := range rep.Findings {
		r.Findings[string(f.Kind)]++
		switch f.Severity() {
		case SeverityError:
			r.Errors++
		case SeverityWarning:
			r.Warnings++
		}
	}
	if !rep.OK() {
		r.Result = VerifyFailed
	}
	return r
}

// RecordVerify stores the outcome of a verification in verify_runs (with
// the store's actor and this host), and in the custody log. A store whose
// schema predates verify_runs gets only the custody log entry.
func (s *Store) RecordVerify(ctx context.Context, r VerifyRun) error {
	if r.Actor == "" {
		r.Actor = s.opts.Actor
	}
	if r.Host == "" {
		r.Host, _ = os.Hostname()
	}
	detail := fmt.Sprintf("trigger=%s chain=%q from=%s to=%s chains=%d rows=%d checkpoints=%d external=%d errors=%d warnings=%d",
		r.Trigger, r.Chain, r.ContentFrom, r.ContentTo, r.Chains, r.Rows, r.Checkpoints, r.ExternalCheckpoints, r.Errors, r.Warnings)
	if err := s.Log(ctx, "verify", detail, r.Result); err != nil {
		return err
	}
	ok, err := s.hasTable(ctx, "verify_runs")
	if err != nil || !ok {
		return err
	}
	keys := make([]string, 0, len(r.Findings))
	vals := make([]string, 0, len(r.Findings))
	for k, v := range r.Findings {
		keys = append(keys, k)
		vals = append(vals, fmt.Sprint(v))
	}
	err = s.eng.Exec(ctx, "INSERT INTO "+s.db+`.verify_runs SELECT {started:DateTime64(6)}, {finished:DateTime64(6)}, {actor:String}, {host:String},
 {trigger:String}, {chain:String}, {cfrom:String}, {cto:String}, {result:String}, {chains:UInt64}, {rows:UInt64}, {checkpoints:UInt64},
 {external:UInt64}, {errors:UInt64}, {warnings:UInt64}, mapFromArrays({kinds:Array(String)}, {counts:Array(UInt64)})`, engine.Params{
		"started": formatTime(r.StartedAt), "finished": formatTime(r.FinishedAt), "actor": r.Actor, "host": r.Host,
		"trigger": r.Trigger, "chain": r.Chain, "cfrom": r.ContentFrom, "cto": r.ContentTo, "result": r.Result,
		"chains": fmt.Sprint(r.Chains), "rows": fmt.Sprint(r.Rows), "checkpoints": fmt.Sprint(r.Checkpoints),
		"external": fmt.Sprint(r.ExternalCheckpoints), "errors": fmt.Sprint(r.Errors), "warnings": fmt.Sprint(r.Warnings),
		"kinds": engine.StringArray(keys), "counts": "[" + strings.Join(vals, ",") + "]",
	})
	if err != nil {
		return fmt.Errorf("record verify run: %w", err)
	}
	return nil
}

// LastVerify returns the newest recorded verification, nil when there is
// none (or the schema predates verify_runs).
func (s *Store) LastVerify(ctx context.Context) (*VerifyRun, error) {
	ok, err := s.hasTable(ctx, "verify_runs")
	if err != nil || !ok {
		return nil, err
	}
	var out *VerifyRun
	err = s.queryEach(ctx, "SELECT started_at, finished_at, actor, host, toString(trigger), chain, content_from, content_to, toString(result), chains, rows, checkpoints, external_checkpoints, errors, warnings, arrayStringConcat(arrayMap((k, v) -> concat(k, '=', toString(v)), mapKeys(findings), mapValues(findings)), ',') FROM "+s.db+".verify_runs ORDER BY finished_at DESC LIMIT 1", nil, func(rs engine.Rows) error {
		var r VerifyRun
		var findings string // kind=count,...
		if err := rs.Scan(&r.StartedAt, &r.FinishedAt, &r.Actor, &r.Host, &r.Trigger, &r.Chain, &r.ContentFrom, &r.ContentTo, &r.Result, &r.Chains, &r.Rows, &r.Checkpoints, &r.ExternalCheckpoints, &r.Errors, &r.Warnings, &findings); err != nil {
			return err
		}
		r.Findings = map[string]uint64{}
		for _, kv := range strings.Split(findings, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				n, err := strconv.ParseUint(v, 10, 64)
				if err != nil {
					return fmt.Errorf("finding count %q: %w", kv, err)
				}
				r.Findings[k] = n
			}
		}
		out = &r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read last verify: %w", err)
	}
	return out, nil
}

// CheckpointTimes returns when each chain's newest checkpoint was signed
// (its created_at).
func (s *Store) CheckpointTimes(ctx context.Context) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	err := s.queryEach(ctx, "SELECT toString(chain), max(created_at) FROM "+s.db+".checkpoints GROUP BY chain", nil, func(r engine.Rows) error {
		var c string
		var at time.Time
		if err := r.Scan(&c, &at); err != nil {
			return err
		}
		out[c] = at
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoint times: %w", err)
	}
	return out, nil
}
