package storage

// Retention and legal hold.
//
// Evidence must be kept for a minimum time (and, for privacy, not much
// longer), but a trail that can be shortened is a trail that can be
// falsified. So the only deletion Custody performs is a retention purge of
// whole monthly events partitions, and only when every row in the
// partition is past the minimum retention of its service and category,
// no legal hold touches it, and for every chain in it the partition's rows
// are a prefix of what remains. Each purge is recorded in the purges table
// with a signed checkpoint of the chain at the last purged row (see
// docs/format/purge-v1.md), so verify resumes the chain there and reports
// the purge instead of a gap; a deletion without such a record still fails.
// A chain may be purged whole; if its stream comes back it continues from
// the purge record.
//
// Quarantined records (not normalized, so of unknown service, resource and
// actor) go by whole monthly partition too, but only past the longest
// minimum retention of any rule and while no legal hold could concern
// them; each such purge is written to the custody log with a digest of
// the records removed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/sumdb/note"

	"github.com/custody-audit/custody/event"
	"github.com/custody-audit/custody/storage/engine"
)

// Errors of retention and legal hold.
var (
	// ErrRetained means a purge was asked for a partition that must stay:
	// within retention, held, or not attestable. The error text says why.
	ErrRetained = errors.New("partition must be kept")
	// ErrNoSuchHold means no legal hold has the given id.
	ErrNoSuchHold = errors.New("no such legal hold")
	// ErrHoldReleased means the legal hold was already released.
	ErrHoldReleased = errors.New("legal hold already released")
	// ErrNoRetentionSchema means the store predates retention (migration
	// 0002).
	ErrNoRetentionSchema = errors.New("store has no retention tables: run `custody init` to upgrade the schema")
)

// DefaultMinRetentionDays is the default minimum retention: 400 days keeps
// a full year of audit evidence plus a quarter for late investigations.
const DefaultMinRetentionDays = 400

// RetentionConfig is the retention policy, the `retention:` section of
// the config file:
//
//	retention:
//	  min_days: 400
//	  max_days: 0
//	  rules:
//	    - {service: aks, category: kube-audit, min_days: 730}
//	    - {service: arm, max_days: 1095}
type RetentionConfig struct {
	// MinDays is the default minimum retention in days: no event is
	// purged until this many days after the newer of its event time and
	// received time. At least 1. Default 400.
	MinDays int `yaml:"min_days"`
	// MaxDays is the default maximum retention in days: a partition older
	// than this for any of its rows is reported as overdue. 0 means no
	// maximum. When set, at least MinDays.
	MaxDays int `yaml:"max_days"`
	// Rules override the defaults for one service, or one category of a
	// service. The most specific rule wins.
	Rules []RetentionRule `yaml:"rules"`
}

// RetentionRule is the retention of one service or service/category.
type RetentionRule struct {
	// Service is the event service: aks, acr, aci or arm. Required.
	Service string `yaml:"service"`
	// Category narrows the rule to one event category (kube-audit,
	// ContainerRegistryRepositoryEvents, Administrative...). Empty means
	// every category of Service.
	Category string `yaml:"category"`
	// MinDays is the minimum retention in days; 0 inherits the
	// service's rule, then RetentionConfig.MinDays.
	MinDays int `yaml:"min_days"`
	// MaxDays is the maximum retention in days; 0 inherits the
	// service's rule, then RetentionConfig.MaxDays.
	MaxDays int `yaml:"max_days"`
}

// DefaultRetentionConfig keeps everything at least 400 days, with no
// maximum.
func DefaultRetentionConfig() RetentionConfig {
	return RetentionConfig{MinDays: DefaultMinRetentionDays}
}

// Validate reports the first invalid field by its config path.
func (c RetentionConfig) Validate() error {
	if c.MinDays < 1 {
		return fmt.Errorf("retention.min_days: must be at least 1 day, got %d", c.MinDays)
	}
	if c.MaxDays < 0 {
		return fmt.Errorf("retention.max_days: must be 0 (no maximum) or a number of days, got %d", c.MaxDays)
	}
	if c.MaxDays > 0 && c.MaxDays < c.MinDays {
		return fmt.Errorf("retention.max_days: %d is below retention.min_days %d", c.MaxDays, c.MinDays)
	}
	seen := map[string]int{}
	for i, r := range c.Rules {
		path := fmt.Sprintf("retention.rules[%d]", i)
		switch event.Service(r.Service) {
		case event.ServiceAKS, event.ServiceACR, event.ServiceACI, event.ServiceARM:
		case "":
			return fmt.Errorf("%s.service: required (aks, acr, aci or arm)", path)
		default:
			return fmt.Errorf("%s.service: unknown service %q (aks, acr, aci or arm)", path, r.Service)
		}
		if r.MinDays < 0 {
			return fmt.Errorf("%s.min_days: must be 0 (inherit) or a number of days, got %d", path, r.MinDays)
		}
		if r.MaxDays < 0 {
			return fmt.Errorf("%s.max_days: must be 0 (inherit) or a number of days, got %d", path, r.MaxDays)
		}
		key := r.Service + "/" + r.Category
		if j, dup := seen[key]; dup {
			return fmt.Errorf("%s: same service and category as retention.rules[%d]", path, j)
		}
		seen[key] = i
	}
	for i, r := range c.Rules {
		eff := c.RuleFor(r.Service, r.Category)
		if eff.MaxDays > 0 && eff.MaxDays < eff.MinDays {
			return fmt.Errorf("retention.rules[%d]: max_days %d is below min_days %d for %s", i, eff.MaxDays, eff.MinDays, key(r.Service, r.Category))
		}
	}
	return nil
}

func key(service, category string) string {
	if category == "" {
		return service
	}
	return service + "/" + category
}

// QuarantineRule is the retention of quarantined records, whose service
// and category are unknown: the longest minimum of the defaults and every
// rule, and the longest maximum, or no maximum when any applicable
// retention has none.
func (c RetentionConfig) QuarantineRule() RetentionRule {
	out := RetentionRule{MinDays: c.MinDays, MaxDays: c.MaxDays}
	noMax := c.MaxDays == 0
	for _, r := range c.Rules {
		eff := c.RuleFor(r.Service, r.Category)
		out.MinDays = max(out.MinDays, eff.MinDays)
		if eff.MaxDays == 0 {
			noMax = true
		}
		out.MaxDays = max(out.MaxDays, eff.MaxDays)
	}
	if noMax {
		out.MaxDays = 0
	}
	return out
}

// RuleFor returns the effective retention of events of service and
// category: the service/category rule, over the service rule, over the
// defaults.
func (c RetentionConfig) RuleFor(service, category string) RetentionRule {
	out := RetentionRule{Service: service, Category: category, MinDays: c.MinDays, MaxDays: c.MaxDays}
	apply := func(cat string) {
		for _, r := range c.Rules {
			if r.Service != service || r.Category != cat {
				continue
			}
			if r.MinDays > 0 {
				out.MinDays = r.MinDays
			}
			if r.MaxDays > 0 {
				out.MaxDays = r.MaxDays
			}
		}
	}
	apply("")
	if category != "" {
		apply(category)
	}
	return out
}

// ParseRetentionConfig reads the `retention:` section of a YAML config
// file (other sections are ignored) over DefaultRetentionConfig, strictly:
// an unknown field is an error. The result is validated.
func ParseRetentionConfig(data []byte) (RetentionConfig, error) {
	// The inline map takes the file's other sections; the retention
	// section itself is decoded strictly, keeping the file's line numbers.
	doc := struct {
		Retention RetentionConfig `yaml:"retention"`
		Other     map[string]any  `yaml:",inline"`
	}{Retention: DefaultRetentionConfig()}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return DefaultRetentionConfig(), fmt.Errorf("parse retention policy: %w", err)
	}
	if err := doc.Retention.Validate(); err != nil {
		return doc.Retention, err
	}
	return doc.Retention, nil
}

// HoldKind says what a legal hold preserves.
type HoldKind string

// Legal hold kinds.
const (
	// HoldResource keeps every event of an Azure resource id and of every
	// resource under it (a resource group keeps its resources), compared
	// case-insensitively as Azure does.
	HoldResource HoldKind = "resource"
	// HoldActor keeps every event whose actor name, object id, app id or
	// impersonator equals the value (case-insensitive).
	HoldActor HoldKind = "actor"
	// HoldTime keeps every event whose event time or received time lies in
	// [From, To).
	HoldTime HoldKind = "time"
)

// Hold is a legal hold: events it matches are never purged while it is
// active, and neither is any partition holding one of them.
type Hold struct {
	ID       string    `json:"id"`
	Kind     HoldKind  `json:"kind"`
	Resource string    `json:"resource,omitempty"`
	Actor    string    `json:"actor,omitempty"`
	From     time.Time `json:"from,omitzero"`
	To       time.Time `json:"to,omitzero"`
	Reason   string    `json:"reason"`

	CreatedBy     string    `json:"created_by"`
	CreatedAt     time.Time `json:"created_at"`
	ReleasedBy    string    `json:"released_by,omitempty"`
	ReleasedAt    time.Time `json:"released_at,omitzero"`
	ReleaseReason string    `json:"release_reason,omitempty"`
}

// Active reports whether the hold is still in force.
func (h Hold) Active() bool { return h.ReleasedAt.IsZero() }

// Subject describes what the hold keeps, in one line.
func (h Hold) Subject() string {
	switch h.Kind {
	case HoldResource:
		return "resource " + h.Resource
	case HoldActor:
		return "actor " + h.Actor
	case HoldTime:
		return fmt.Sprintf("time %s to %s", h.From.UTC().Format(time.RFC3339), h.To.UTC().Format(time.RFC3339))
	}
	return string(h.Kind)
}

// validate checks a new hold.
func (h Hold) validate() error {
	if strings.TrimSpace(h.Reason) == "" {
		return errors.New("legal hold needs a reason")
	}
	switch h.Kind {
	case HoldResource:
		if strings.TrimSpace(h.Resource) == "" {
			return errors.New("resource hold needs a resource id")
		}
	case HoldActor:
		if strings.TrimSpace(h.Actor) == "" {
			return errors.New("actor hold needs an actor")
		}
	case HoldTime:
		if h.From.IsZero() || h.To.IsZero() {
			return errors.New("time hold needs both from and to")
		}
		if !h.From.Before(h.To) {
			return fmt.Errorf("time hold: from %s is not before to %s", h.From.Format(time.RFC3339), h.To.Format(time.RFC3339))
		}
	default:
		return fmt.Errorf("legal hold kind %q: want resource, actor or time", h.Kind)
	}
	return nil
}

// condition is the events predicate of the hold, with its parameters.
func (h Hold) condition() (string, engine.Params) {
	switch h.Kind {
	case HoldResource:
		return "(lower(resource_id) = lower({v:String}) OR startsWith(lower(resource_id), concat(lower({v:String}), '/')))", engine.Params{"v": strings.TrimRight(h.Resource, "/")}
	case HoldActor:
		return "(lower(actor_name) = lower({v:String}) OR lower(actor_object_id) = lower({v:String}) OR lower(actor_app_id) = lower({v:String}) OR lower(impersonated_by) = lower({v:String}))", engine.Params{"v": h.Actor}
	default:
		return "((event_time >= {from:DateTime64(6)} AND event_time < {to:DateTime64(6)}) OR (received_time >= {from:DateTime64(6)} AND received_time < {to:DateTime64(6)}))",
			engine.Params{"from": formatTime(h.From), "to": formatTime(h.To)}
	}
}

func (s *Store) hasTable(ctx context.Context, name string) (bool, error) {
	ok, err := s.exists(ctx, "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {t:String}", engine.Params{"db": s.db, "t": name})
	if err != nil {
		return false, fmt.Errorf("look up table %s: %w", name, err)
	}
	return ok, nil
}

// exists reports whether countQuery, a SELECT count(), counts anything.
func (s *Store) exists(ctx context.Context, countQuery string, p engine.Params) (bool, error) {
	var n uint64
	err := s.queryEach(ctx, countQuery, p, func(r engine.Rows) error { return r.Scan(&n) })
	return n > 0, err
}

func (s *Store) requireRetentionSchema(ctx context.Context) error {
	for _, t := range []string{"legal_holds", "purges"} {
		ok, err := s.hasTable(ctx, t)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNoRetentionSchema
		}
	}
	return nil
}

func randomID(prefix string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate id: %w", err)
	}
	return prefix + hex.EncodeToString(b[:]), nil
}

var holdColumns = []engine.Column{
	{Name: "hold_id", Type: "String"}, {Name: "change", Type: "String"}, {Name: "kind", Type: "String"},
	{Name: "resource_id", Type: "String"}, {Name: "actor", Type: "String"},
	{Name: "from_time", Type: "DateTime64(6, 'UTC')"}, {Name: "to_time", Type: "DateTime64(6, 'UTC')"},
	{Name: "reason", Type: "String"}, {Name: "changed_by", Type: "String"}, {Name: "changed_at", Type: "DateTime64(6, 'UTC')"},
}

func (s *Store) writeHoldChange(ctx context.Context, h Hold, change, reason string, at time.Time) error {
	b, err := s.eng.PrepareBatch(ctx, s.db+".legal_holds", holdColumns)
	if err != nil {
		return err
	}
	if err := b.Append(h.ID, change, string(h.Kind), h.Resource, h.Actor, h.From.UTC(), h.To.UTC(), reason, s.opts.Actor, at.UTC()); err != nil {
		return err
	}
	return b.Send(ctx, "")
}

// AddHold places a legal hold and records it in the custody log. ID,
// CreatedBy and CreatedAt are assigned; the hold is returned as stored.
func (s *Store) AddHold(ctx context.Context, h Hold) (Hold, error) {
	h.Resource, h.Actor, h.Reason = strings.TrimSpace(h.Resource), strings.TrimSpace(h.Actor), strings.TrimSpace(h.Reason)
	h.From, h.To = h.From.UTC().Truncate(time.Microsecond), h.To.UTC().Truncate(time.Microsecond)
	if err := h.validate(); err != nil {
		return h, err
	}
	if err := s.requireRetentionSchema(ctx); err != nil {
		return h, err
	}
	id, err := randomID("hold-")
	if err != nil {
		return h, err
	}
	h.ID, h.CreatedBy, h.CreatedAt = id, s.opts.Actor, s.now().UTC().Truncate(time.Microsecond)
	if err := s.writeHoldChange(ctx, h, "add", h.Reason, h.CreatedAt); err != nil {
		return h, fmt.Errorf("store legal hold: %w", err)
	}
	if err := s.Log(ctx, "hold.add", fmt.Sprintf("%s %s reason=%q", h.ID, h.Subject(), h.Reason), "ok"); err != nil {
		return h, err
	}
	return h, nil
}

// ReleaseHold ends a legal hold, with a reason, and records it in the
// custody log. The hold stays listed as released.
func (s *Store) ReleaseHold(ctx context.Context, id, reason string) (Hold, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Hold{}, errors.New("releasing a legal hold needs a reason")
	}
	holds, err := s.Holds(ctx)
	if err != nil {
		return Hold{}, err
	}
	for _, h := range holds {
		if h.ID != id {
			continue
		}
		if !h.Active() {
			return h, fmt.Errorf("release %s: %w (by %s at %s)", id, ErrHoldReleased, h.ReleasedBy, h.ReleasedAt.Format(time.RFC3339))
		}
		at := s.now().UTC().Truncate(time.Microsecond)
		if err := s.writeHoldChange(ctx, h, "release", reason, at); err != nil {
			return h, fmt.Errorf("release legal hold: %w", err)
		}
		h.ReleasedBy, h.ReleasedAt, h.ReleaseReason = s.opts.Actor, at, reason
		if err := s.Log(ctx, "hold.release", fmt.Sprintf("%s %s reason=%q", h.ID, h.Subject(), reason), "ok"); err != nil {
			return h, err
		}
		return h, nil
	}
	return Hold{}, fmt.Errorf("release %s: %w", id, ErrNoSuchHold)
}

// Holds returns every legal hold, active or released, oldest first.
func (s *Store) Holds(ctx context.Context) ([]Hold, error) {
	if err := s.requireRetentionSchema(ctx); err != nil {
		return nil, err
	}
	byID := map[string]*Hold{}
	var order []string
	err := s.queryEach(ctx, "SELECT hold_id, change, kind, resource_id, actor, from_time, to_time, reason, changed_by, changed_at FROM "+s.db+".legal_holds ORDER BY changed_at, hold_id, change",
		nil, func(r engine.Rows) error {
			var h Hold
			var change, kind string
			if err := r.Scan(&h.ID, &change, &kind, &h.Resource, &h.Actor, &h.From, &h.To, &h.Reason, &h.CreatedBy, &h.CreatedAt); err != nil {
				return err
			}
			h.Kind = HoldKind(kind)
			if h.Kind != HoldTime {
				h.From, h.To = time.Time{}, time.Time{}
			}
			switch change {
			case "add":
				if _, dup := byID[h.ID]; !dup {
					byID[h.ID] = &h
					order = append(order, h.ID)
				}
			case "release":
				if cur, ok := byID[h.ID]; ok && cur.Active() {
					cur.ReleasedBy, cur.ReleasedAt, cur.ReleaseReason = h.CreatedBy, h.CreatedAt, h.Reason
				}
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read legal holds: %w", err)
	}
	out := make([]Hold, 0, len(order))
	for _, id := range order {
		out = append(out, *byID[id])
	}
	return out, nil
}

// RetentionPlan is what a retention purge would remove, partition by
// partition, and why each partition goes or stays.
type RetentionPlan struct {
	// At is the time retention was measured against.
	At time.Time `json:"at"`
	// Partitions lists every events partition, oldest first.
	Partitions []PartitionPlan `json:"partitions"`
	// Quarantine lists every quarantine partition, oldest first.
	Quarantine []QuarantinePlan `json:"quarantine"`
}

// PurgeableQuarantine returns the quarantine partitions the plan removes.
func (p *RetentionPlan) PurgeableQuarantine() []QuarantinePlan {
	var out []QuarantinePlan
	for _, qp := range p.Quarantine {
		if qp.Purge {
			out = append(out, qp)
		}
	}
	return out
}

// QuarantinePlan is the verdict on one quarantine partition: records that
// could not be normalized, so whose service, category, resource and actor
// are unknown. They are kept for the longest minimum retention of any
// rule (QuarantineRule), and while any active legal hold could concern
// them. They are not hash-chained, so no prefix rule applies.
type QuarantinePlan struct {
	// Partition is the partition id (YYYYMM of received_time).
	Partition string `json:"partition"`
	Rows      uint64 `json:"rows"`
	// From and To are the oldest and newest received time in it; retention
	// counts from To.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// MinDays and MaxDays are QuarantineRule's; KeepUntil is when the
	// newest record's minimum retention ends.
	MinDays   int       `json:"min_days"`
	MaxDays   int       `json:"max_days,omitempty"`
	KeepUntil time.Time `json:"keep_until"`
	// Purge is true when apply removes the partition.
	Purge bool `json:"purge"`
	// Overdue is true when the records are past the maximum retention.
	Overdue bool `json:"overdue"`
	// Reasons say why the partition goes or stays.
	Reasons []string `json:"reasons"`
	// Holds are the active legal holds that keep it.
	Holds []string `json:"holds,omitempty"`
}

// Purgeable returns the partitions the plan removes.
func (p *RetentionPlan) Purgeable() []PartitionPlan {
	var out []PartitionPlan
	for _, pp := range p.Partitions {
		if pp.Purge {
			out = append(out, pp)
		}
	}
	return out
}

// PartitionPlan is the verdict on one events partition.
type PartitionPlan struct {
	// Partition is the partition id (YYYYMM of received_time).
	Partition string `json:"partition"`
	Rows      uint64 `json:"rows"`
	// From and To are the oldest and newest received time in it; Newest
	// is the newest event or received time, what retention counts from.
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Newest time.Time `json:"newest"`
	// Purge is true when apply removes the partition.
	Purge bool `json:"purge"`
	// Overdue is true when some rows are past their maximum retention.
	Overdue bool `json:"overdue"`
	// Reasons say why the partition goes or stays.
	Reasons []string `json:"reasons"`
	// Holds are the active legal holds matching rows in it.
	Holds  []string       `json:"holds,omitempty"`
	Chains []ChainSpan    `json:"chains"`
	Groups []GroupVerdict `json:"groups"`
}

// ChainSpan is the run of one chain held by a partition.
type ChainSpan struct {
	Chain    string `json:"chain"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Rows     uint64 `json:"rows"`
	// Counts are the rows by "service/category".
	Counts map[string]uint64 `json:"counts"`
}

// GroupVerdict is the retention of one service/category in a partition.
type GroupVerdict struct {
	Service  string    `json:"service"`
	Category string    `json:"category"`
	Rows     uint64    `json:"rows"`
	Newest   time.Time `json:"newest"`
	MinDays  int       `json:"min_days"`
	MaxDays  int       `json:"max_days,omitempty"`
	// KeepUntil is when the newest row's minimum retention ends.
	KeepUntil time.Time `json:"keep_until"`
}

// PartitionStat is what the store holds of one chain and one
// service/category in one events partition: a row of the statistics
// retention planning decides from.
type PartitionStat struct {
	Partition         string // YYYYMM of received_time
	Chain             string
	Service, Category string
	Rows              uint64
	FirstSeq, LastSeq uint64
	// From and To bound the rows' received_time; Newest is the latest of
	// their event and received times.
	From, To, Newest time.Time
}

// HoldMatch is how many rows of a partition an active legal hold keeps.
type HoldMatch struct {
	Hold      Hold
	Partition string
	Rows      uint64
}

// QuarantineStat is what the store holds in one quarantine partition.
type QuarantineStat struct {
	Partition string // YYYYMM
	Rows      uint64
	From, To  time.Time
}

// RetentionInput is everything retention planning decides from, as the
// store returns it (see Store.retentionInput).
type RetentionInput struct {
	// Now is the store's clock.
	Now time.Time
	// Partitions are the events partitions' statistics, in (partition,
	// chain, service, category) order.
	Partitions []PartitionStat
	// Checkpointed is each chain's newest signed checkpoint size.
	Checkpointed map[string]uint64
	// Holds are every legal hold, active or released; HoldMatches the
	// rows the active ones keep, hold by hold.
	Holds       []Hold
	HoldMatches []HoldMatch
	// Quarantine are the quarantine partitions, in order.
	Quarantine []QuarantineStat
}

// PlanRetention decides, for every events partition, whether a retention
// purge under cfg would remove it now (the store's clock), and why: the
// store fetches (retentionInput), PlanRetentionFrom decides.
func (s *Store) PlanRetention(ctx context.Context, cfg RetentionConfig) (*RetentionPlan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := s.requireRetentionSchema(ctx); err != nil {
		return nil, err
	}
	in, err := s.retentionInput(ctx)
	if err != nil {
		return nil, err
	}
	return PlanRetentionFrom(cfg, in)
}

// retentionInput reads what retention planning decides from.
func (s *Store) retentionInput(ctx context.Context) (RetentionInput, error) {
	in := RetentionInput{Now: s.now().UTC()}
	q := `SELECT toString(toYYYYMM(received_time)) AS p, toString(chain), toString(service), toString(category),
	count(), min(seq), max(seq), min(received_time), max(received_time), max(greatest(event_time, received_time))
FROM ` + s.db + `.events GROUP BY p, chain, service, category ORDER BY p, chain, service, category`
	err := s.queryEach(ctx, q, nil, func(r engine.Rows) error {
		var st PartitionStat
		if err := r.Scan(&st.Partition, &st.Chain, &st.Service, &st.Category, &st.Rows, &st.FirstSeq, &st.LastSeq, &st.From, &st.To, &st.Newest); err != nil {
			return err
		}
		in.Partitions = append(in.Partitions, st)
		return nil
	})
	if err != nil {
		return in, fmt.Errorf("plan retention: read partitions: %w", err)
	}
	if in.Checkpointed, err = s.newestCheckpointSizes(ctx); err != nil {
		return in, err
	}
	if in.Holds, err = s.Holds(ctx); err != nil {
		return in, err
	}
	for _, h := range in.Holds {
		if !h.Active() {
			continue
		}
		cond, p := h.condition()
		err := s.queryEach(ctx, "SELECT toString(toYYYYMM(received_time)) AS p, count() FROM "+s.db+".events WHERE "+cond+" GROUP BY p ORDER BY p", p, func(r engine.Rows) error {
			m := HoldMatch{Hold: h}
			if err := r.Scan(&m.Partition, &m.Rows); err != nil {
				return err
			}
			in.HoldMatches = append(in.HoldMatches, m)
			return nil
		})
		if err != nil {
			return in, fmt.Errorf("plan retention: match legal hold %s: %w", h.ID, err)
		}
	}
	err = s.queryEach(ctx, "SELECT toString(toYYYYMM(received_time)) AS p, count(), min(received_time), max(received_time) FROM "+s.db+".quarantine GROUP BY p ORDER BY p", nil, func(r engine.Rows) error {
		var qs QuarantineStat
		if err := r.Scan(&qs.Partition, &qs.Rows, &qs.From, &qs.To); err != nil {
			return err
		}
		in.Quarantine = append(in.Quarantine, qs)
		return nil
	})
	if err != nil {
		return in, fmt.Errorf("plan retention: read quarantine partitions: %w", err)
	}
	return in, nil
}

// PlanRetentionFrom decides, from what the store holds (in), which
// partitions a retention purge under cfg removes at in.Now, and why. It
// reads nothing: every input is explicit. An events partition goes when
// every service/category in it is past its minimum retention, no active
// legal hold matches it, and each chain's rows in it are one contiguous
// run that continues what earlier purges removed and is covered by a
// signed checkpoint. Requires a valid cfg.
func PlanRetentionFrom(cfg RetentionConfig, in RetentionInput) (*RetentionPlan, error) {
	now := in.Now.UTC()
	plan := &RetentionPlan{At: now}
	parts := map[string]*PartitionPlan{}
	spans := map[string]map[string]*ChainSpan{}
	groups := map[string]map[string]*GroupVerdict{}
	chainMin := map[string]uint64{}
	for _, st := range in.Partitions {
		p, chain, service, category, n := st.Partition, st.Chain, st.Service, st.Category, st.Rows
		lo, hi, from, to, newest := st.FirstSeq, st.LastSeq, st.From, st.To, st.Newest
		pp := parts[p]
		if pp == nil {
			pp = &PartitionPlan{Partition: p, From: from, To: to}
			parts[p] = pp
			spans[p] = map[string]*ChainSpan{}
			groups[p] = map[string]*GroupVerdict{}
		}
		pp.Rows += n
		if from.Before(pp.From) {
			pp.From = from
		}
		if to.After(pp.To) {
			pp.To = to
		}
		if newest.After(pp.Newest) {
			pp.Newest = newest
		}
		sp := spans[p][chain]
		if sp == nil {
			sp = &ChainSpan{Chain: chain, FirstSeq: lo, LastSeq: hi, Counts: map[string]uint64{}}
			spans[p][chain] = sp
		}
		sp.FirstSeq, sp.LastSeq = min(sp.FirstSeq, lo), max(sp.LastSeq, hi)
		sp.Rows += n
		sp.Counts[service+"/"+category] += n
		g := groups[p][service+"/"+category]
		if g == nil {
			rule := cfg.RuleFor(service, category)
			g = &GroupVerdict{Service: service, Category: category, MinDays: rule.MinDays, MaxDays: rule.MaxDays}
			groups[p][service+"/"+category] = g
		}
		g.Rows += n
		if newest.After(g.Newest) {
			g.Newest = newest
		}
		if m, ok := chainMin[chain]; !ok || lo < m {
			chainMin[chain] = lo
		}
	}
	for _, m := range in.HoldMatches {
		if pp := parts[m.Partition]; pp != nil {
			pp.Holds = append(pp.Holds, m.Hold.ID)
			pp.Reasons = append(pp.Reasons, fmt.Sprintf("held: %s keeps %d rows (%s; %s)", m.Hold.ID, m.Rows, m.Hold.Subject(), m.Hold.Reason))
		}
	}

	ids := make([]string, 0, len(parts))
	for p := range parts {
		ids = append(ids, p)
	}
	sort.Strings(ids)
	// purgedTo is, per chain, the last seq gone once the partitions
	// decided so far are purged; keptIn is the first partition of the
	// chain that stays.
	purgedTo := map[string]uint64{}
	for c, m := range chainMin {
		purgedTo[c] = m - 1
	}
	keptIn := map[string]string{}
	for _, id := range ids {
		pp := parts[id]
		for _, g := range groups[id] {
			pp.Groups = append(pp.Groups, *g)
		}
		sort.Slice(pp.Groups, func(i, j int) bool {
			return key(pp.Groups[i].Service, pp.Groups[i].Category) < key(pp.Groups[j].Service, pp.Groups[j].Category)
		})
		for _, sp := range spans[id] {
			pp.Chains = append(pp.Chains, *sp)
		}
		sort.Slice(pp.Chains, func(i, j int) bool { return pp.Chains[i].Chain < pp.Chains[j].Chain })

		expired := len(pp.Holds) == 0
		var why []string
		for i := range pp.Groups {
			g := &pp.Groups[i]
			g.KeepUntil = g.Newest.AddDate(0, 0, g.MinDays)
			if now.Before(g.KeepUntil) {
				expired = false
				why = append(why, fmt.Sprintf("retained: %s rows are kept until %s (min %d days from %s)", key(g.Service, g.Category), day(g.KeepUntil), g.MinDays, day(g.Newest)))
			}
			if g.MaxDays > 0 && !now.Before(g.Newest.AddDate(0, 0, g.MaxDays)) {
				pp.Overdue = true
				why = append(why, fmt.Sprintf("overdue: %s rows are past their maximum retention of %d days", key(g.Service, g.Category), g.MaxDays))
			}
		}
		// Why the partition's rows could not be attested. Damage is
		// always shown; ordering reasons only when nothing else keeps
		// the partition.
		attestable := true
		for _, sp := range pp.Chains {
			var reason string
			damage := false
			switch {
			case sp.Rows != sp.LastSeq-sp.FirstSeq+1:
				damage = true
				reason = fmt.Sprintf("blocked: chain %s has %d rows for seq %d..%d, not one contiguous run (run custody verify)", sp.Chain, sp.Rows, sp.FirstSeq, sp.LastSeq)
			case sp.FirstSeq != purgedTo[sp.Chain]+1:
				if k, ok := keptIn[sp.Chain]; ok {
					reason = fmt.Sprintf("blocked: chain %s rows before seq %d stay in partition %s, so its rows here are not a prefix", sp.Chain, sp.FirstSeq, k)
				} else {
					damage = true
					reason = fmt.Sprintf("blocked: chain %s rows %d..%d are missing, so its rows here are not a prefix (run custody verify)", sp.Chain, purgedTo[sp.Chain]+1, sp.FirstSeq-1)
				}
			case sp.LastSeq > in.Checkpointed[sp.Chain]:
				reason = fmt.Sprintf("blocked: chain %s rows up to %d are not covered by a signed checkpoint (newest %d)", sp.Chain, sp.LastSeq, in.Checkpointed[sp.Chain])
			}
			if reason != "" {
				attestable = false
				if damage || expired {
					why = append(why, reason)
				}
			}
		}
		pp.Purge = expired && attestable
		if pp.Purge {
			for _, sp := range pp.Chains {
				purgedTo[sp.Chain] = sp.LastSeq
			}
			var rules []string
			for _, g := range pp.Groups {
				rules = append(rules, fmt.Sprintf("%s min %d days ended %s", key(g.Service, g.Category), g.MinDays, day(g.KeepUntil)))
			}
			pp.Reasons = append([]string{"past retention: " + strings.Join(rules, ", ")}, why...)
		} else {
			for _, sp := range pp.Chains {
				if _, ok := keptIn[sp.Chain]; !ok {
					keptIn[sp.Chain] = id
				}
			}
			pp.Reasons = append(pp.Reasons, why...)
		}
		plan.Partitions = append(plan.Partitions, *pp)
	}
	var err error
	if plan.Quarantine, err = planQuarantine(cfg, now, in.Holds, in.Quarantine); err != nil {
		return nil, err
	}
	return plan, nil
}

// planQuarantine decides for every quarantine partition whether it goes.
// A time hold keeps the months it overlaps; a resource or actor hold
// keeps every month, as it cannot be matched against unparsed records.
func planQuarantine(cfg RetentionConfig, now time.Time, holds []Hold, stats []QuarantineStat) ([]QuarantinePlan, error) {
	rule := cfg.QuarantineRule()
	var out []QuarantinePlan
	for _, st := range stats {
		out = append(out, QuarantinePlan{Partition: st.Partition, Rows: st.Rows, From: st.From, To: st.To, MinDays: rule.MinDays, MaxDays: rule.MaxDays})
	}
	for i := range out {
		qp := &out[i]
		start, err := time.Parse("200601", qp.Partition)
		if err != nil {
			return nil, fmt.Errorf("plan retention: quarantine partition id %q is not YYYYMM", qp.Partition)
		}
		end := start.AddDate(0, 1, 0)
		for _, h := range holds {
			if !h.Active() {
				continue
			}
			switch h.Kind {
			case HoldTime:
				if h.From.Before(end) && h.To.After(start) {
					qp.Holds = append(qp.Holds, h.ID)
					qp.Reasons = append(qp.Reasons, fmt.Sprintf("held: %s overlaps this month of unparsed records (%s; %s)", h.ID, h.Subject(), h.Reason))
				}
			default:
				qp.Holds = append(qp.Holds, h.ID)
				qp.Reasons = append(qp.Reasons, fmt.Sprintf("held: %s (%s; %s) cannot be matched against unparsed records, so it keeps every quarantine partition", h.ID, h.Subject(), h.Reason))
			}
		}
		qp.KeepUntil = qp.To.AddDate(0, 0, qp.MinDays)
		retained := now.Before(qp.KeepUntil)
		if retained {
			qp.Reasons = append(qp.Reasons, fmt.Sprintf("retained: quarantined records are kept until %s (min %d days from %s, the longest minimum of any rule)", day(qp.KeepUntil), qp.MinDays, day(qp.To)))
		}
		if qp.MaxDays > 0 && !now.Before(qp.To.AddDate(0, 0, qp.MaxDays)) {
			qp.Overdue = true
			qp.Reasons = append(qp.Reasons, fmt.Sprintf("overdue: quarantined records are past the maximum retention of %d days", qp.MaxDays))
		}
		qp.Purge = !retained && len(qp.Holds) == 0
		if qp.Purge {
			qp.Reasons = append([]string{fmt.Sprintf("past retention: quarantined records min %d days (the longest minimum of any rule) ended %s", qp.MinDays, day(qp.KeepUntil))}, qp.Reasons...)
		}
	}
	return out, nil
}

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func (s *Store) newestCheckpointSizes(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := s.queryEach(ctx, "SELECT toString(chain), max(tree_size) FROM "+s.db+".checkpoints GROUP BY chain", nil, func(r engine.Rows) error {
		var c string
		var n uint64
		if err := r.Scan(&c, &n); err != nil {
			return err
		}
		out[c] = n
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read checkpoint sizes: %w", err)
	}
	return out, nil
}

// ApplyRetentionOptions control a retention purge.
type ApplyRetentionOptions struct {
	// Verifier checks the store's checkpoints: every chain with rows to
	// purge is verified first, and a chain that fails is not purged (a
	// purge record must never attest tampered rows). Required.
	Verifier note.Verifier
	// Partitions, when set, limits the purge to these partition ids (of
	// events, quarantine or both); each must be one the plan removes, in
	// every table where it exists, or nothing is purged. Empty purges every
	// partition the plan removes.
	Partitions []string
}

// PurgeRecord is the attestation of one chain's rows removed by a purge.
type PurgeRecord struct {
	ID        string    `json:"id"`
	Partition string    `json:"partition"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Newest    time.Time `json:"newest"`
	// PartitionRows counts every row of the partition, all chains.
	PartitionRows uint64            `json:"partition_rows"`
	Chain         string            `json:"chain"`
	FirstSeq      uint64            `json:"first_seq"`
	LastSeq       uint64            `json:"last_seq"`
	Rows          uint64            `json:"rows"`
	Counts        map[string]uint64 `json:"counts"`
	// LastHash is the hash of row LastSeq; CompactRange and Root are the
	// chain's Merkle compact range and root over rows 1..LastSeq.
	LastHash     Hash   `json:"-"`
	CompactRange []Hash `json:"-"`
	Root         Hash   `json:"-"`
	// HeadSeq and HeadHash are the chain head at purge time; Checkpoint*
	// its newest checkpoint then.
	HeadSeq        uint64    `json:"head_seq"`
	HeadHash       Hash      `json:"-"`
	CheckpointSize uint64    `json:"checkpoint_size"`
	CheckpointRoot Hash      `json:"-"`
	CheckpointNote string    `json:"-"`
	Policy         string    `json:"policy"`
	Note           []byte    `json:"-"`
	PurgedAt       time.Time `json:"purged_at"`
	Actor          string    `json:"actor"`
}

// RetentionResult is what ApplyRetention did.
type RetentionResult struct {
	Plan *RetentionPlan `json:"plan"`
	// Purged are the partitions dropped, oldest first, and Records their
	// purge records.
	Purged  []string      `json:"purged"`
	Rows    uint64        `json:"rows"`
	Records []PurgeRecord `json:"records"`
	// Quarantine are the quarantine partitions dropped, oldest first.
	Quarantine []QuarantinePurge `json:"quarantine,omitempty"`
}

// QuarantinePurge records one quarantine partition dropped under
// retention. The same facts are written to the custody log.
type QuarantinePurge struct {
	Partition string `json:"partition"`
	Rows      uint64 `json:"rows"`
	// Digest is the SHA-256 over the 32-byte raw_sha256 of every purged
	// record, in (chain, source_offset, raw_sha256) order, hex-encoded: it
	// identifies exactly which records went.
	Digest   string    `json:"digest"`
	PurgedAt time.Time `json:"purged_at"`
	Actor    string    `json:"actor"`
}

// ApplyRetention purges the partitions PlanRetention says may go: for
// each events partition, oldest first, it verifies the partition is
// unchanged, records a signed purge record per chain, drops the partition
// and writes the custody log; then it drops each quarantine partition that
// may go, writing its record count and digest to the custody log. A
// partition named in opts that must be kept (its events or its quarantine
// records) fails the whole call before anything is removed, with
// ErrRetained, and is logged as refused.
func (s *Store) ApplyRetention(ctx context.Context, cfg RetentionConfig, opts ApplyRetentionOptions) (*RetentionResult, error) {
	if s.opts.Signer == nil {
		return nil, ErrNoSigner
	}
	if opts.Verifier == nil {
		return nil, errors.New("retention apply: a verification key is required")
	}
	plan, err := s.PlanRetention(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &RetentionResult{Plan: plan}
	byID := map[string]PartitionPlan{}
	for _, pp := range plan.Partitions {
		byID[pp.Partition] = pp
	}
	quarByID := map[string]QuarantinePlan{}
	for _, qp := range plan.Quarantine {
		quarByID[qp.Partition] = qp
	}
	var selected []PartitionPlan
	var quarSelected []QuarantinePlan
	if len(opts.Partitions) == 0 {
		selected = plan.Purgeable()
		quarSelected = plan.PurgeableQuarantine()
	} else {
		want := map[string]bool{}
		for _, id := range opts.Partitions {
			pp, ok := byID[id]
			qp, qok := quarByID[id]
			if !ok && !qok {
				return nil, fmt.Errorf("retention apply: no events partition %q, nor quarantine partition", id)
			}
			if qok && !qp.Purge {
				err := fmt.Errorf("%w: quarantine partition %s (%d records): %s", ErrRetained, id, qp.Rows, strings.Join(qp.Reasons, "; "))
				if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("quarantine partition %s refused: %s", id, strings.Join(qp.Reasons, "; ")), "refused"); lerr != nil {
					return nil, errors.Join(err, lerr)
				}
				return nil, err
			}
			if !ok {
				continue
			}
			if !pp.Purge {
				err := fmt.Errorf("%w: partition %s (%d rows): %s", ErrRetained, id, pp.Rows, strings.Join(pp.Reasons, "; "))
				if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("partition %s refused: %s", id, strings.Join(pp.Reasons, "; ")), "refused"); lerr != nil {
					return nil, errors.Join(err, lerr)
				}
				return nil, err
			}
			want[id] = true
		}
		// a named partition is purged only with every purgeable one
		// before it holding the same chains: keep plan order.
		for _, pp := range plan.Purgeable() {
			if want[pp.Partition] {
				selected = append(selected, pp)
			}
		}
		if err := checkPrefixSelection(plan, want); err != nil {
			if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("partitions %s refused: %v", strings.Join(opts.Partitions, ","), err), "refused"); lerr != nil {
				return nil, errors.Join(err, lerr)
			}
			return nil, err
		}
		for _, qp := range plan.PurgeableQuarantine() {
			if slices.Contains(opts.Partitions, qp.Partition) {
				quarSelected = append(quarSelected, qp)
			}
		}
	}
	if err := s.applyEventsRetention(ctx, selected, opts.Verifier, res); err != nil {
		return res, err
	}
	for _, qp := range quarSelected {
		qr, err := s.purgeQuarantinePartition(ctx, qp)
		if err != nil {
			if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("quarantine partition %s: %v", qp.Partition, err), "failed"); lerr != nil {
				return res, errors.Join(err, lerr)
			}
			return res, err
		}
		res.Quarantine = append(res.Quarantine, qr)
	}
	return res, nil
}

// applyEventsRetention verifies the chains of the selected events
// partitions and purges them, oldest first, adding them to res.
func (s *Store) applyEventsRetention(ctx context.Context, selected []PartitionPlan, verifier note.Verifier, res *RetentionResult) error {
	if len(selected) == 0 {
		return nil
	}
	// Verify every chain about to be attested: links, Merkle roots and
	// checkpoints whole, row contents up to the newest row purged (the
	// rest stays and is verified by custody verify).
	var contentTo time.Time
	for _, pp := range selected {
		if pp.Newest.After(contentTo) {
			contentTo = pp.Newest
		}
	}
	contentTo = contentTo.Add(time.Microsecond)
	verified := map[string]bool{}
	for _, pp := range selected {
		for _, sp := range pp.Chains {
			if verified[sp.Chain] {
				continue
			}
			rep, err := s.Verify(ctx, VerifyOptions{Chain: sp.Chain, To: contentTo, Verifier: verifier, CheckpointDir: s.opts.CheckpointDir})
			if err != nil {
				return fmt.Errorf("retention apply: verify chain %s: %w", sp.Chain, err)
			}
			if !rep.OK() {
				var fs []string
				for _, f := range rep.Findings {
					if f.Failing() {
						fs = append(fs, f.String())
					}
				}
				err := fmt.Errorf("%w: chain %s fails verification, so its rows cannot be attested: %s", ErrRetained, sp.Chain, strings.Join(fs, "; "))
				if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("partition %s refused: chain %s fails verification", pp.Partition, sp.Chain), "refused"); lerr != nil {
					return errors.Join(err, lerr)
				}
				return err
			}
			verified[sp.Chain] = true
		}
	}
	for _, pp := range selected {
		recs, err := s.purgePartition(ctx, pp, verifier)
		if err != nil {
			if lerr := s.Log(ctx, "retention.purge", fmt.Sprintf("partition %s: %v", pp.Partition, err), "failed"); lerr != nil {
				return errors.Join(err, lerr)
			}
			return err
		}
		res.Purged = append(res.Purged, pp.Partition)
		res.Rows += pp.Rows
		res.Records = append(res.Records, recs...)
	}
	return nil
}

// checkPrefixSelection refuses a selection that skips a purgeable
// partition holding earlier rows of a chain of a selected one.
func checkPrefixSelection(plan *RetentionPlan, want map[string]bool) error {
	skipped := map[string]string{} // chain -> purgeable partition left out
	for _, pp := range plan.Purgeable() {
		for _, sp := range pp.Chains {
			if !want[pp.Partition] {
				if _, ok := skipped[sp.Chain]; !ok {
					skipped[sp.Chain] = pp.Partition
				}
				continue
			}
			if k, ok := skipped[sp.Chain]; ok {
				return fmt.Errorf("%w: partition %s: chain %s has earlier rows in partition %s, which is not selected", ErrRetained, pp.Partition, sp.Chain, k)
			}
		}
	}
	return nil
}

var purgeColumns = []engine.Column{
	{Name: "purge_id", Type: "String"}, {Name: "partition_id", Type: "String"},
	{Name: "range_from", Type: "DateTime64(6, 'UTC')"}, {Name: "range_to", Type: "DateTime64(6, 'UTC')"}, {Name: "newest_time", Type: "DateTime64(6, 'UTC')"},
	{Name: "partition_rows", Type: "UInt64"}, {Name: "chain", Type: "String"},
	{Name: "first_seq", Type: "UInt64"}, {Name: "last_seq", Type: "UInt64"}, {Name: "chain_rows", Type: "UInt64"},
	{Name: "counts", Type: "String"}, {Name: "last_hash", Type: "FixedString(32)"}, {Name: "compact_range", Type: "Array(String)"},
	{Name: "root_hash", Type: "FixedString(32)"}, {Name: "head_seq", Type: "UInt64"}, {Name: "head_hash", Type: "FixedString(32)"},
	{Name: "checkpoint_size", Type: "UInt64"}, {Name: "checkpoint_root", Type: "FixedString(32)"}, {Name: "checkpoint_note", Type: "String"},
	{Name: "policy", Type: "String"}, {Name: "note", Type: "String"},
	{Name: "purged_at", Type: "DateTime64(6, 'UTC')"}, {Name: "actor", Type: "String"},
}

// purgePartition records and drops one partition the plan removes.
func (s *Store) purgePartition(ctx context.Context, pp PartitionPlan, v note.Verifier) ([]PurgeRecord, error) {
	if !isPartitionID(pp.Partition) {
		return nil, fmt.Errorf("partition id %q is not YYYYMM", pp.Partition)
	}
	id, err := randomID("purge-" + pp.Partition + "-")
	if err != nil {
		return nil, err
	}
	at := s.now().UTC().Truncate(time.Microsecond)
	var policy []string
	for _, g := range pp.Groups {
		policy = append(policy, fmt.Sprintf("%s min_days=%d max_days=%d newest=%s", key(g.Service, g.Category), g.MinDays, g.MaxDays, g.Newest.Format(time.RFC3339Nano)))
	}
	var recs []PurgeRecord
	for _, sp := range pp.Chains {
		rec := PurgeRecord{
			ID: id, Partition: pp.Partition, From: pp.From, To: pp.To, Newest: pp.Newest, PartitionRows: pp.Rows,
			Chain: sp.Chain, FirstSeq: sp.FirstSeq, LastSeq: sp.LastSeq, Rows: sp.Rows, Counts: sp.Counts,
			Policy: strings.Join(policy, "; "), PurgedAt: at, Actor: s.opts.Actor,
		}
		if err := s.attest(ctx, &rec, v); err != nil {
			return nil, fmt.Errorf("attest chain %s rows %d..%d: %w", sp.Chain, sp.FirstSeq, sp.LastSeq, err)
		}
		recs = append(recs, rec)
	}
	b, err := s.eng.PrepareBatch(ctx, s.db+".purges", purgeColumns)
	if err != nil {
		return nil, fmt.Errorf("record purge: %w", err)
	}
	for _, r := range recs {
		counts, err := json.Marshal(r.Counts)
		if err != nil {
			return nil, fmt.Errorf("record purge: %w", err)
		}
		rng := make([]string, len(r.CompactRange))
		for i, h := range r.CompactRange {
			rng[i] = string(h[:])
		}
		if err := b.Append(r.ID, r.Partition, r.From, r.To, r.Newest, r.PartitionRows, r.Chain, r.FirstSeq, r.LastSeq, r.Rows,
			string(counts), r.LastHash, rng, r.Root, r.HeadSeq, r.HeadHash, r.CheckpointSize, r.CheckpointRoot, r.CheckpointNote,
			r.Policy, string(r.Note), r.PurgedAt, r.Actor); err != nil {
			return nil, fmt.Errorf("record purge: %w", err)
		}
	}
	if err := b.Send(ctx, ""); err != nil {
		return nil, fmt.Errorf("record purge: %w", err)
	}
	// Nothing may have arrived in the partition since the plan: the
	// records cover exactly what is dropped.
	var n uint64
	err = s.queryEach(ctx, "SELECT count() FROM "+s.db+".events WHERE toYYYYMM(received_time) = {p:UInt32}", engine.Params{"p": pp.Partition}, func(r engine.Rows) error {
		return r.Scan(&n)
	})
	if err != nil {
		return nil, fmt.Errorf("recount partition %s: %w", pp.Partition, err)
	}
	if n != pp.Rows {
		return nil, fmt.Errorf("partition %s changed during the purge (%d rows planned, %d now): nothing dropped, run apply again", pp.Partition, pp.Rows, n)
	}
	table, onCluster := s.db+".events", ""
	if c := s.opts.Schema.Cluster; c != "" {
		table, onCluster = s.db+".events_local", " ON CLUSTER "+c
	}
	if err := s.eng.Exec(ctx, "ALTER TABLE "+table+onCluster+" DROP PARTITION ID '"+pp.Partition+"'", nil); err != nil {
		return nil, fmt.Errorf("drop partition %s: %w", pp.Partition, err)
	}
	var detail []string
	for _, r := range recs {
		detail = append(detail, fmt.Sprintf("%s seq %d..%d", r.Chain, r.FirstSeq, r.LastSeq))
	}
	if err := s.Log(ctx, "retention.purge", fmt.Sprintf("%s partition %s rows=%d received %s..%s newest %s chains: %s", id, pp.Partition, pp.Rows,
		pp.From.Format(time.RFC3339), pp.To.Format(time.RFC3339), pp.Newest.Format(time.RFC3339), strings.Join(detail, ", ")), "ok"); err != nil {
		return recs, err
	}
	return recs, nil
}

func isPartitionID(s string) bool {
	if len(s) != 6 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// attest fills rec's chain state: the hash of row LastSeq, the Merkle
// compact range and root over rows 1..LastSeq, the chain head and newest
// checkpoint, and the signed purge note. The tree is resumed only from a
// checkpoint or purge record whose signature v accepts.
func (s *Store) attest(ctx context.Context, rec *PurgeRecord, v note.Verifier) error {
	p := engine.Params{"chain": rec.Chain}
	err := s.queryEach(ctx, "SELECT max(seq), argMax(hash, seq) FROM "+s.db+".events WHERE chain = {chain:String}", p, func(r engine.Rows) error {
		return r.Scan(&rec.HeadSeq, &rec.HeadHash)
	})
	if err != nil {
		return fmt.Errorf("read chain head: %w", err)
	}
	err = s.queryEach(ctx, "SELECT tree_size, root_hash, note FROM "+s.db+".checkpoints WHERE chain = {chain:String} ORDER BY tree_size DESC LIMIT 1", p, func(r engine.Rows) error {
		return r.Scan(&rec.CheckpointSize, &rec.CheckpointRoot, &rec.CheckpointNote)
	})
	if err != nil {
		return fmt.Errorf("read newest checkpoint: %w", err)
	}
	// Resume the tree at the largest known size in [FirstSeq-1, LastSeq]:
	// a checkpoint, the previous purge record, or the empty tree.
	type start struct {
		size uint64
		rng  []string
		root Hash
	}
	var best *start
	if rec.FirstSeq == 1 {
		best = &start{}
	}
	pick := func(purge bool) func(r engine.Rows) error {
		return func(r engine.Rows) error {
			var st start
			var msg string
			if err := r.Scan(&st.size, &st.rng, &st.root, &msg); err != nil {
				return err
			}
			var size uint64
			var root Hash
			if purge {
				a, err := OpenPurgeNote([]byte(msg), v)
				if err != nil {
					return nil // not trusted; verify reports it
				}
				size, root = a.LastSeq, a.Root
			} else {
				cp, err := OpenCheckpoint([]byte(msg), v)
				if err != nil {
					return nil
				}
				size, root = cp.Size, cp.Root
			}
			if size != st.size || root != st.root {
				return nil
			}
			if best == nil || st.size > best.size {
				best = &st
			}
			return nil
		}
	}
	bounds := engine.Params{"chain": rec.Chain, "lo": strconv.FormatUint(rec.FirstSeq-1, 10), "hi": strconv.FormatUint(rec.LastSeq, 10)}
	if err := s.queryEach(ctx, "SELECT tree_size, compact_range, root_hash, note FROM "+s.db+".checkpoints WHERE chain = {chain:String} AND tree_size >= {lo:UInt64} AND tree_size <= {hi:UInt64} ORDER BY tree_size DESC LIMIT 1", bounds, pick(false)); err != nil {
		return fmt.Errorf("read checkpoint range: %w", err)
	}
	if err := s.queryEach(ctx, "SELECT last_seq, compact_range, root_hash, note FROM "+s.db+".purges WHERE chain = {chain:String} AND last_seq = {lo:UInt64}", bounds, pick(true)); err != nil {
		return fmt.Errorf("read previous purge: %w", err)
	}
	if best == nil {
		return fmt.Errorf("no checkpoint or purge record to resume the Merkle tree at seq %d", rec.FirstSeq-1)
	}
	raw := make([][]byte, len(best.rng))
	for i, x := range best.rng {
		raw[i] = []byte(x)
	}
	tree, err := rangeFactory.NewRange(0, best.size, raw)
	if err != nil {
		return fmt.Errorf("restore Merkle range at %d: %w", best.size, err)
	}
	if best.size > 0 {
		root, err := tree.GetRootHash(nil)
		if err != nil || !bytes.Equal(root, best.root[:]) {
			return fmt.Errorf("stored Merkle range at %d does not hash to its root", best.size)
		}
	}
	err = s.queryEach(ctx, "SELECT seq, hash FROM "+s.db+".events WHERE chain = {chain:String} AND seq > {lo:UInt64} AND seq <= {hi:UInt64} ORDER BY seq",
		engine.Params{"chain": rec.Chain, "lo": strconv.FormatUint(best.size, 10), "hi": strconv.FormatUint(rec.LastSeq, 10)}, func(r engine.Rows) error {
			var seq uint64
			var h Hash
			if err := r.Scan(&seq, &h); err != nil {
				return err
			}
			if seq != tree.End()+1 {
				return fmt.Errorf("chain has no row %d", tree.End()+1)
			}
			leaf := LeafHash(h)
			return tree.Append(leaf[:], nil)
		})
	if err != nil {
		return fmt.Errorf("read leaves: %w", err)
	}
	if tree.End() != rec.LastSeq {
		return fmt.Errorf("chain ends at %d before seq %d", tree.End(), rec.LastSeq)
	}
	root, err := tree.GetRootHash(nil)
	if err != nil {
		return fmt.Errorf("compute Merkle root: %w", err)
	}
	copy(rec.Root[:], root)
	for _, h := range tree.Hashes() {
		var x Hash
		copy(x[:], h)
		rec.CompactRange = append(rec.CompactRange, x)
	}
	found := false
	err = s.queryEach(ctx, "SELECT hash FROM "+s.db+".events WHERE chain = {chain:String} AND seq = {hi:UInt64}", bounds, func(r engine.Rows) error {
		found = true
		return r.Scan(&rec.LastHash)
	})
	if err != nil {
		return fmt.Errorf("read row %d: %w", rec.LastSeq, err)
	}
	if !found {
		return fmt.Errorf("chain has no row %d", rec.LastSeq)
	}
	rec.Note, err = signPurge(s.opts.Signer, rec)
	return err
}
