package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/urfave/cli/v3"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/archive"
	"github.com/custody-audit/custody/storage"
	"github.com/custody-audit/custody/storage/engine"
)

// backfillCommand loads archives (diagnostic-settings containers, Event
// Hubs Capture files, saved bodies) through the collector's pipeline.
func backfillCommand() *cli.Command {
	return &cli.Command{
		Name:      "backfill",
		Usage:     "load archived logs from files or a Blob container into the trail",
		ArgsUsage: "[PATH...]",
		Description: `Reads PT1H.json archives, Event Hubs Capture Avro files and raw bodies from
local files and directories or from an Azure Blob container, in hour order,
and appends them exactly as the collector would. Interrupted backfills
resume where the store stands: run the same command again.

A last line cut short (the current hour's PT1H.json is still being
appended to) is left for the next run, which reads it whole; in an object
not modified for 2 hours it is quarantined. A record over
--max-record-bytes is quarantined with its first bytes, the limit and the
whole record's SHA-256. Each file or blob is a source of its own, named by
its path; one whose size and SHA-256 match an object stored whole before
(recorded in the custody log) is skipped as already stored.

   $ custody backfill ./insights-logs-kube-audit-admin
   $ custody backfill --from 2025-05-01 --to 2025-05-08 \
       --blob-container-url https://acct.blob.core.windows.net/insights-logs-kube-audit-admin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "first hour to load: 2006-01-02, 2006-01-02T15 or RFC 3339 (by the hour in the path)"},
			&cli.StringFlag{Name: "to", Usage: "end of the range, exclusive (same forms as --from)"},
			&cli.StringFlag{Name: "format", Value: "auto", Usage: "content format {auto|jsonlines|records|capture|eventhubs}"},
			&cli.StringFlag{Name: "blob-container-url", Usage: "container URL, with a SAS or signed in with Entra ID (azidentity default chain)", Sources: cli.EnvVars("CUSTODY_BLOB_CONTAINER_URL")},
			&cli.StringFlag{Name: "blob-connection-string", Usage: "storage account connection string (use the environment variable; it is a secret)", Sources: cli.EnvVars("CUSTODY_BLOB_CONNECTION_STRING")},
			&cli.StringFlag{Name: "container", Usage: "container name, with --blob-connection-string"},
			&cli.StringFlag{Name: "prefix", Usage: "only blobs whose name starts with this"},
			&cli.IntFlag{Name: "batch", Value: archive.DefaultMaxBatchMessages, Usage: "records per stored batch"},
			&cli.BoolFlag{Name: "continue-on-error", Usage: "record an unreadable object and go on instead of stopping"},
			memoryLimitFlag(),
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			applyMemoryLimit(cmd)
			opts, err := backfillOptionsFrom(cmd)
			if err != nil {
				return usageError{err}
			}
			opts.Logger, opts.Stdout, opts.Stderr = logger(cmd), cmd.Root().Writer, cmd.Root().ErrWriter
			opts.Open = func(ctx context.Context) (*ingestion, error) { return openIngest(ctx, cmd) }
			return runBackfill(ctx, opts)
		},
	}
}

// backfillOptions are the parsed flags of `custody backfill`.
type backfillOptions struct {
	Paths           []string
	Blob            *archive.BlobConfig
	Archive         archive.Config
	ContinueOnError bool
	Logger          *slog.Logger
	// Stdout receives the summary, Stderr the progress.
	Stdout, Stderr io.Writer
	// Open opens the store to append, with its positions.
	Open func(ctx context.Context) (*ingestion, error)
}

func backfillOptionsFrom(cmd *cli.Command) (backfillOptions, error) {
	var o backfillOptions
	o.Archive = archive.DefaultConfig()
	f, err := archive.ParseFormat(cmd.String("format"))
	if err != nil {
		return o, fmt.Errorf("--format: %w", err)
	}
	o.Archive.Format = f
	if o.Archive.Range.From, err = parseHour(cmd.String("from")); err != nil {
		return o, fmt.Errorf("--from: %w", err)
	}
	if o.Archive.Range.To, err = parseHour(cmd.String("to")); err != nil {
		return o, fmt.Errorf("--to: %w", err)
	}
	if n := cmd.Int("batch"); n <= 0 {
		return o, fmt.Errorf("--batch: %d must be positive", n)
	}
	o.Archive.MaxBatchMessages = int(cmd.Int("batch"))
	if o.Archive.MaxRecordBytes, err = maxRecordBytes(cmd); err != nil {
		return o, err
	}
	o.Archive.ContinueOnError = cmd.Bool("continue-on-error")
	o.ContinueOnError = o.Archive.ContinueOnError
	if err := o.Archive.Validate(); err != nil {
		return o, err
	}
	url, cs := cmd.String("blob-container-url"), cmd.String("blob-connection-string")
	o.Paths = cmd.Args().Slice()
	switch {
	case url != "" && cs != "":
		return o, errors.New("give one of --blob-container-url and --blob-connection-string")
	case (url != "" || cs != "") && len(o.Paths) > 0:
		return o, errors.New("give paths or a Blob container, not both")
	case url == "" && cs == "" && len(o.Paths) == 0:
		return o, errors.New("backfill needs a PATH or --blob-container-url/--blob-connection-string")
	case cs != "" && cmd.String("container") == "":
		return o, errors.New("--container is required with --blob-connection-string")
	case url == "" && cs == "" && cmd.String("prefix") != "":
		return o, errors.New("--prefix applies to a Blob container only")
	}
	if url != "" || cs != "" {
		o.Blob = &archive.BlobConfig{ConnectionString: cs, ContainerURL: url, Container: cmd.String("container"), Prefix: cmd.String("prefix")}
	}
	return o, nil
}

// parseHour reads a --from/--to value; empty leaves the side open.
func parseHour(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not 2006-01-02, 2006-01-02T15 or RFC 3339", s)
}

// backfillSummary is what a backfill did.
type backfillSummary struct {
	ingest.Stats
	Failures []*archive.ObjectError
	// Incomplete are objects whose incomplete last line was left for the
	// next run.
	Incomplete []string
	// Duplicates are objects skipped because the same content was stored
	// before from another path.
	Duplicates []archive.Duplicate
}

// runBackfill loads the archives o names into the store o.Open opens and
// prints what it did.
func runBackfill(ctx context.Context, o backfillOptions) error {
	log := o.Logger
	var (
		store archive.Store
		kind  = "file"
		err   error
	)
	if o.Blob != nil {
		kind = "blob"
		if o.Blob.ConnectionString == "" && !strings.Contains(o.Blob.ContainerURL, "sig=") {
			cred, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return fmt.Errorf("blob credential: %w", err)
			}
			o.Blob.Credential = cred
		}
		log.InfoContext(ctx, "backfill from blob", "blob", *o.Blob)
		store, err = archive.NewBlob(*o.Blob)
	} else {
		store, err = archive.NewLocal(o.Paths...)
	}
	if err != nil {
		return err
	}

	in, err := o.Open(ctx)
	if err != nil {
		return err
	}
	defer in.close()
	stored, err := storedObjects(ctx, in.store)
	if err != nil {
		// Recognising copies is a convenience: without it they are
		// stored again, as their own chains.
		log.WarnContext(ctx, "copies of archives stored before will not be recognised", "err", err)
	}
	var (
		doneMu sync.Mutex
		done   []archive.Completion
	)
	o.Archive.OnComplete = func(c archive.Completion) {
		doneMu.Lock()
		done = append(done, c)
		doneMu.Unlock()
	}
	src, err := archive.New(store, o.Archive, archive.Resume{Positions: in.positions, Stored: stored}, log)
	if err != nil {
		return err
	}
	defer src.Close(context.Background())

	pc := ingest.DefaultPipelineConfig()
	pc.Name, pc.SourceKind = "backfill", kind
	pc.MetricStream = func(string) string { return "archive" }
	pc.Permanent = func(err error) bool { return !errors.Is(err, ingest.ErrNotConnected) }
	pc.SinkPermanent = engineGone
	p, err := ingest.NewPipeline(src, in.norm, in.sink, pc, nil, log)
	if err != nil {
		return err
	}
	stop := archive.RenderProgress(ctx, src.Progress(), o.Stderr, log, 0)
	runErr := p.Run(ctx)
	stop()
	doneMu.Lock()
	if err := recordStoredObjects(context.WithoutCancel(ctx), in.store, done); err != nil {
		log.WarnContext(ctx, "the digests of the objects stored could not be recorded: a copy of them at another path would be stored again", "err", err)
	}
	doneMu.Unlock()
	sum := backfillSummary{Stats: p.Stats(), Failures: src.Failures(), Incomplete: src.Incomplete(), Duplicates: src.Duplicates()}
	printBackfillSummary(o.Stdout, sum)
	return backfillOutcome(runErr, ctx.Err() != nil, len(sum.Failures))
}

// engineGone reports an error of a store whose engine process exited:
// nothing can be written to it again in this process.
func engineGone(err error) bool { return errors.Is(err, engine.ErrEngineGone) }

// Advice closing a failed backfill's message: whether running the same
// command again helps.
const (
	adviceResume    = "run the same command again to resume from what the store holds"
	adviceEngine    = "the embedded engine's process exited (killed, out of memory, or crashed: see engine.log in the store directory); what was stored is intact: run the same command again to resume from what the store holds"
	adviceContent   = "this is the content itself: running the backfill again will not help; remove the object from the paths, name its --format, or pass --continue-on-error to record it as failed and go on"
	adviceAccess    = "fix the path or its permissions, then run the same command again (what was stored is kept)"
	adviceFailures  = "the objects listed above were not stored; running again retries only them: fix them first if their content is at fault"
	adviceInterrupt = "backfill interrupted; run the same command again to resume"
)

// backfillOutcome turns how a backfill ended into its error: what went
// wrong and whether running it again can help. A permanent failure (the
// content of an object) never says to resume.
func backfillOutcome(runErr error, interrupted bool, failures int) error {
	switch {
	case runErr == nil && interrupted:
		return errors.New(adviceInterrupt)
	case runErr == nil && failures > 0:
		return fmt.Errorf("backfill: %d objects could not be read; %s", failures, adviceFailures)
	case runErr == nil:
		return nil
	case engineGone(runErr):
		return fmt.Errorf("backfill: %w; %s", runErr, adviceEngine)
	case errors.Is(runErr, archive.ErrUnrecognized), errors.Is(runErr, archive.ErrMalformed):
		return fmt.Errorf("backfill: %w; %s", runErr, adviceContent)
	case errors.Is(runErr, fs.ErrNotExist), errors.Is(runErr, fs.ErrPermission):
		return fmt.Errorf("backfill: %w; %s", runErr, adviceAccess)
	}
	return fmt.Errorf("backfill: %w; %s", runErr, adviceResume)
}

func printBackfillSummary(w io.Writer, s backfillSummary) {
	fmt.Fprintf(w, "backfill: %d events stored, %d already stored, %d quarantined, %d dropped by policy (%d messages)\n",
		s.Stored, s.Skipped, s.Quarantined, s.Dropped, s.Messages)
	for _, f := range s.Failures {
		fmt.Fprintf(w, "failed: %s\n", f.Error())
	}
	for _, d := range s.Duplicates {
		fmt.Fprintf(w, "already stored: %s has the content (size and SHA-256) of %s; skipped\n", d.Name, d.Of)
	}
	for _, name := range s.Incomplete {
		fmt.Fprintf(w, "incomplete: %s ends in a partial line (still being written); the next run reads it whole\n", name)
	}
}

// The custody log records every object a backfill stored whole, by
// content, so that the same archive at another path is recognised: one
// entry per up to storedPerEntry objects, action backfillObjectsAction,
// one line "<sha256 hex> <size> <stream>" per object.
const (
	backfillObjectsAction = "backfill.objects"
	storedPerEntry        = 1000
)

// storedObjects reads the objects earlier backfills stored whole.
func storedObjects(ctx context.Context, st *storage.Store) ([]archive.StoredObject, error) {
	var out []archive.StoredObject
	err := engine.Each(ctx, st.Engine(), "SELECT detail FROM "+st.Database()+".custody_log WHERE action = {action:String}",
		engine.Params{"action": backfillObjectsAction}, func(r engine.Rows) error {
			var detail string
			if err := r.Scan(&detail); err != nil {
				return err
			}
			for line := range strings.SplitSeq(detail, "\n") {
				f := strings.SplitN(line, " ", 3)
				if len(f) != 3 {
					continue
				}
				sum, err := hex.DecodeString(f[0])
				size, serr := strconv.ParseInt(f[1], 10, 64)
				if err != nil || serr != nil || len(sum) != 32 {
					continue
				}
				out = append(out, archive.StoredObject{Stream: f[2], Size: size, SHA256: [32]byte(sum)})
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read the objects stored by earlier backfills: %w", err)
	}
	return out, nil
}

// recordStoredObjects writes the digests of the objects stored whole to
// the custody log.
func recordStoredObjects(ctx context.Context, st *storage.Store, done []archive.Completion) error {
	for len(done) > 0 {
		n := min(len(done), storedPerEntry)
		var b strings.Builder
		for i, c := range done[:n] {
			if i > 0 {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "%x %d %s", c.SHA256, c.Size, c.Stream)
		}
		if err := st.Log(ctx, backfillObjectsAction, b.String(), "ok"); err != nil {
			return err
		}
		done = done[n:]
	}
	return nil
}
