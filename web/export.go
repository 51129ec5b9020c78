package web

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/custody-audit/custody/bundle"
	"github.com/custody-audit/custody/bundle/export"
	"github.com/custody-audit/custody/storage"
)

// exportRequest is the body of POST /api/export.
type exportRequest struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Format string `json:"format"`
	Chain  string `json:"chain"`
}

func (s *Server) handleExport(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Signer == nil {
		return &apiError{errDisabled, "exports are off: this server has no signing key (custody serve --export)"}
	}
	var req exportRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("body: want {\"from\", \"to\", \"format\", \"chain\"} as JSON")
	}
	from, err := parseTime("from", req.From)
	if err != nil {
		return err
	}
	to, err := parseTime("to", req.To)
	if err != nil {
		return err
	}
	if !from.Before(to) {
		return badRequest("from is not before to")
	}
	if !slices.Contains(bundle.Formats(), req.Format) {
		return badRequest("format: want one of %s", strings.Join(bundle.Formats(), ", "))
	}
	if req.Chain, err = text(map[string][]string{"chain": {req.Chain}}, "chain"); err != nil {
		return err
	}
	if !s.exports.TryLock() {
		return &apiError{errConflict, "an export is already running"}
	}
	defer s.exports.Unlock()

	// The bundle goes to a directory of the server's own making; nothing
	// the request says becomes part of a path.
	tmp, err := os.MkdirTemp(s.opts.TempDir, "custody-export-")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "bundle")
	ctx := r.Context()
	res, err := export.Export(ctx, export.Options{
		Engine:   s.eng,
		Database: s.db,
		From:     from,
		To:       to,
		Chain:    req.Chain,
		Output:   bundle.Output{Format: req.Format, Dir: dir, Signer: s.opts.Signer, Verifier: s.opts.Verifier, Actor: "custody serve"},
	})
	if err != nil {
		if errors.Is(err, bundle.ErrBadOptions) {
			return badRequest("%s", err.Error())
		}
		return fmt.Errorf("export: %w", err)
	}
	// Not in the custody log (this server never writes to the store):
	// in the server's log.
	s.log.InfoContext(ctx, "export from the web page", "from", req.From, "to", req.To, "format", req.Format, "chain", req.Chain,
		"rows", res.Manifest.Rows, "file_sha256", res.Manifest.Files[0].SHA256)
	name := "custody-export-" + from.UTC().Format("20060102T150405Z") + "-" + to.UTC().Format("20060102T150405Z")
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.zip"`)
	if err := zipDir(w, dir, name); err != nil {
		s.log.ErrorContext(ctx, "export download failed", "err", err)
	}
	return nil
}

// zipDir writes the regular files of dir into a zip under prefix/.
func zipDir(w io.Writer, dir, prefix string) error {
	zw := zip.NewWriter(w)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		fw, err := zw.Create(prefix + "/" + e.Name())
		if err == nil {
			_, err = io.Copy(fw, f)
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

func (s *Server) handleMeta(w http.ResponseWriter, r *http.Request) error {
	m := map[string]any{
		"services": services, "classes": classes, "outcomes": outcomes, "tags": knownTags,
		"export_formats": bundle.Formats(), "export": s.opts.Signer != nil, "collector": s.opts.Collector != nil,
		"engine": s.eng.Kind(), "database": s.db, "event_encoding": storage.EventEncodingVersion,
	}
	if sess, ok := signedIn(r.Context()); ok {
		m["user"] = map[string]string{"name": sess.Name, "username": sess.Username}
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (s *Server) handleCollector(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Collector == nil {
		return &apiError{errDisabled, "no collector here: the collector view is served by custody run --web"}
	}
	ctx := r.Context()
	out := map[string]any{"sources": s.opts.Collector.Sources(ctx)}
	var q []map[string]any
	err := eachQuarantine(ctx, s, func(chain, reason string, n uint64) {
		q = append(q, map[string]any{"chain": chain, "reason": reason, "count": n})
	})
	if err != nil {
		return err
	}
	if q == nil {
		q = []map[string]any{}
	}
	out["quarantine"] = q
	writeJSON(w, http.StatusOK, out)
	return nil
}
