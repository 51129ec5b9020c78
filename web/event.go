package web

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// field is one normalized field, by its column name.
type field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// fields lists a row's normalized fields in the events table's column
// order (raw and the hashes are given apart).
func fields(r *storage.Row) []field {
	e := &r.Event
	t := &e.Target
	ip := ""
	if e.SourceIP.IsValid() {
		ip = e.SourceIP.String()
	}
	attrs := make([]string, 0, len(e.Attributes))
	for _, k := range slices.Sorted(maps.Keys(e.Attributes)) {
		attrs = append(attrs, k+"="+e.Attributes[k])
	}
	return []field{
		{"chain", r.Chain}, {"seq", strconv.FormatUint(r.Seq, 10)}, {"event_id", e.ID},
		{"event_time", formatEventTime(e.Time)}, {"received_time", formatEventTime(e.ReceivedTime)},
		{"service", string(e.Service)}, {"category", e.Category}, {"source_kind", e.SourceKind}, {"source_format", e.SourceFormat},
		{"source_position", e.SourcePosition}, {"source_offset", strconv.FormatInt(r.Offset, 10)},
		{"tenant_id", e.TenantID}, {"subscription_id", e.SubscriptionID}, {"resource_group", e.ResourceGroup},
		{"provider", e.Provider}, {"resource_type", e.ResourceType}, {"resource_name", e.ResourceName}, {"resource_id", e.ResourceID},
		{"actor_name", e.Actor.Name}, {"actor_object_id", e.Actor.ObjectID}, {"actor_type", string(e.Actor.Type)},
		{"actor_app_id", e.Actor.AppID}, {"actor_groups", strings.Join(e.Actor.Groups, ", ")}, {"impersonated_by", e.Actor.ImpersonatedBy},
		{"source_ip", ip}, {"user_agent", e.UserAgent}, {"action", e.Action}, {"action_class", string(e.ActionClass)},
		{"target_api_group", t.APIGroup}, {"target_resource", t.Resource}, {"target_subresource", t.Subresource},
		{"target_namespace", t.Namespace}, {"target_name", t.Name}, {"target_repository", t.Repository}, {"target_tag", t.Tag},
		{"target_digest", t.Digest}, {"target_container_group", t.ContainerGroup}, {"target_container", t.Container}, {"target_image", t.Image},
		{"outcome", string(e.Outcome)}, {"status_code", strconv.FormatInt(int64(e.StatusCode), 10)}, {"reason", e.Reason},
		{"correlation_id", e.CorrelationID}, {"request_id", e.RequestID}, {"tags", strings.Join(e.Tags, ", ")},
		{"attributes", strings.Join(attrs, "\n")}, {"raw_format", e.RawFormat},
	}
}

func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains([]string{"chain", "seq", "id"}, k) {
			return badRequest("unknown parameter %q", trimForError(k))
		}
	}
	chain, err := text(q, "chain")
	if err != nil {
		return err
	}
	id, err := text(q, "id")
	if err != nil {
		return err
	}
	p := engine.Params{}
	var where string
	switch {
	case chain != "" && q.Get("seq") != "":
		seq, err := strconv.ParseUint(q.Get("seq"), 10, 64)
		if err != nil || seq == 0 {
			return badRequest("seq: want a positive integer")
		}
		where = "chain = {chain:String} AND seq = {seq:UInt64}"
		p["chain"], p["seq"] = chain, strconv.FormatUint(seq, 10)
	case id != "" && chain == "":
		where = "event_id = {id:String}"
		p["id"] = id
	default:
		return badRequest("give chain and seq, or id")
	}
	ctx := r.Context()
	var rows []storage.Row
	err = engine.Each(ctx, s.eng, "SELECT "+storage.EventColumnList()+" FROM "+s.db+".events WHERE "+where+" ORDER BY chain, seq LIMIT 10", p, func(er engine.Rows) error {
		var row storage.Row
		if err := storage.ScanRow(er, &row); err != nil {
			return err
		}
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		return fmt.Errorf("read event: %w", err)
	}
	if len(rows) == 0 {
		return &apiError{errNotFound, "no such event"}
	}
	row := &rows[0]
	var h storage.Hasher
	computed := h.Hash(row)
	out := map[string]any{
		"chain": row.Chain, "seq": row.Seq, "event_id": row.Event.ID,
		"fields":        fields(row),
		"raw_base64":    base64.StdEncoding.EncodeToString(row.Event.Raw),
		"raw_bytes":     len(row.Event.Raw),
		"hash":          hex.EncodeToString(row.Hash[:]),
		"prev_hash":     hex.EncodeToString(row.PrevHash[:]),
		"hash_matches":  computed == row.Hash,
		"computed_hash": hex.EncodeToString(computed[:]),
		"verify_key":    s.opts.VerifierKey,
	}
	copies, err := s.copies(ctx, row.Event.ID)
	if err != nil {
		return err
	}
	out["copies"] = copies
	inc, err := proveInclusion(ctx, s.eng, s.db, row.Chain, row.Seq)
	switch {
	case errors.Is(err, errUnattested):
		out["proof_error"] = err.Error()
	case err != nil:
		s.log.WarnContext(ctx, "inclusion proof failed", "chain", row.Chain, "seq", row.Seq, "err", err)
		out["proof_error"] = "no proof: " + err.Error()
	default:
		cp := map[string]any{"size": inc.Checkpoint.Size, "root": hex.EncodeToString(inc.Checkpoint.Root[:]), "note": inc.Checkpoint.Note}
		if c, err := storage.OpenCheckpoint([]byte(inc.Checkpoint.Note), s.opts.Verifier); err != nil {
			cp["signature_error"] = err.Error()
		} else {
			cp["signature_ok"] = c.Chain == row.Chain && c.Size == inc.Checkpoint.Size && c.Root == inc.Checkpoint.Root
		}
		hs := make([]string, len(inc.Proof))
		for i, x := range inc.Proof {
			hs[i] = hex.EncodeToString(x)
		}
		leaf := storage.LeafHash(row.Hash)
		serverOK := proof.VerifyInclusion(rfc6962.DefaultHasher, inc.Index, inc.Checkpoint.Size, leaf[:], inc.Proof, inc.Checkpoint.Root[:]) == nil
		out["checkpoint"] = cp
		out["proof"] = map[string]any{"leaf_index": inc.Index, "tree_size": inc.Checkpoint.Size, "hashes": hs, "server_ok": serverOK}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// eventCopy is one stored copy of an event: the same event id delivered
// by one path, a row of its own chain with its own inclusion proof.
type eventCopy struct {
	Chain    string `json:"chain"`
	Seq      uint64 `json:"seq"`
	Delivery string `json:"delivery"`
	Proof    string `json:"proof"` // the copy's page (its row, hash and inclusion proof)
}

// maxCopies bounds the copies an event page lists.
const maxCopies = 100

// copies lists every stored copy of the event id, first chain first (the
// copy searches and timelines show).
func (s *Server) copies(ctx context.Context, id string) ([]eventCopy, error) {
	out := []eventCopy{}
	err := engine.Each(ctx, s.eng, "SELECT toString(chain), seq, delivery FROM "+s.db+".events WHERE event_id = {id:String} ORDER BY chain, seq LIMIT "+strconv.Itoa(maxCopies),
		engine.Params{"id": id}, func(r engine.Rows) error {
			var c eventCopy
			if err := r.Scan(&c.Chain, &c.Seq, &c.Delivery); err != nil {
				return err
			}
			c.Proof = "/api/event?" + url.Values{"chain": {c.Chain}, "seq": {strconv.FormatUint(c.Seq, 10)}}.Encode()
			out = append(out, c)
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read copies of event %s: %w", id, err)
	}
	return out, nil
}
