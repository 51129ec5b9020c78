package archive

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress counts a backfill's advance. Totals are known once the source
// has listed its objects (Connect); it is safe for concurrent use.
type Progress struct {
	mu    sync.Mutex
	now   func() time.Time
	start time.Time

	totalObjects, totalBytes int64
	doneObjects, doneBytes   int64 // read, skipped as complete, or failed
	readBytes                int64 // read in this run (the rate's basis)
	skippedObjects           int64
	failedObjects            int64
	messages, acked          int64
	rewinds                  int64
	current                  string
}

func newProgress(now func() time.Time) *Progress {
	return &Progress{now: now, start: now()}
}

// ProgressSnapshot is a consistent copy of the counters.
type ProgressSnapshot struct {
	TotalObjects, TotalBytes int64
	// DoneObjects and DoneBytes include objects skipped as already stored
	// and objects that failed.
	DoneObjects, DoneBytes int64
	SkippedObjects         int64
	FailedObjects          int64
	// Messages were handed out; AckedMessages are durable.
	Messages, AckedMessages int64
	// Rewinds counts re-reads after a batch could not be stored.
	Rewinds int64
	// Current is the object being read.
	Current string
	Elapsed time.Duration
	// BytesPerSecond and MessagesPerSecond are averaged over this run,
	// counting only bytes actually read.
	BytesPerSecond, MessagesPerSecond float64
	// ETA is the estimated time to read the rest; -1 when unknown.
	ETA time.Duration
}

// Snapshot returns the counters now.
func (p *Progress) Snapshot() ProgressSnapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProgressSnapshot{
		TotalObjects: p.totalObjects, TotalBytes: p.totalBytes,
		DoneObjects: p.doneObjects, DoneBytes: min(p.doneBytes, p.totalBytes),
		SkippedObjects: p.skippedObjects, FailedObjects: p.failedObjects,
		Messages: p.messages, AckedMessages: p.acked, Rewinds: p.rewinds,
		Current: p.current, Elapsed: p.now().Sub(p.start), ETA: -1,
	}
	if secs := s.Elapsed.Seconds(); secs > 0 {
		s.BytesPerSecond = float64(p.readBytes) / secs
		s.MessagesPerSecond = float64(p.messages) / secs
	}
	switch left := s.TotalBytes - s.DoneBytes; {
	case s.DoneObjects >= s.TotalObjects:
		s.ETA = 0
	case s.BytesPerSecond > 0:
		s.ETA = time.Duration(float64(left) / s.BytesPerSecond * float64(time.Second))
	}
	return s
}

// String renders the snapshot as one human line.
func (s ProgressSnapshot) String() string {
	eta := "unknown"
	if s.ETA >= 0 {
		eta = s.ETA.Round(time.Second).String()
	}
	return fmt.Sprintf("%d/%d objects, %s/%s, %d messages, %s/s, eta %s",
		s.DoneObjects, s.TotalObjects, humanBytes(float64(s.DoneBytes)), humanBytes(float64(s.TotalBytes)),
		s.Messages, humanBytes(s.BytesPerSecond), eta)
}

// LogValue renders the snapshot as structured log attributes.
func (s ProgressSnapshot) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Int64("objects_done", s.DoneObjects), slog.Int64("objects_total", s.TotalObjects),
		slog.Int64("objects_skipped", s.SkippedObjects), slog.Int64("objects_failed", s.FailedObjects),
		slog.Int64("bytes_done", s.DoneBytes), slog.Int64("bytes_total", s.TotalBytes),
		slog.Int64("messages", s.Messages), slog.Int64("messages_acked", s.AckedMessages),
		slog.Float64("bytes_per_second", s.BytesPerSecond), slog.Float64("messages_per_second", s.MessagesPerSecond),
		slog.Duration("eta", s.ETA), slog.String("current", s.Current),
	)
}

func humanBytes(b float64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%.0f B", b)
	}
	div, exp := float64(unit), 0
	for n := b / unit; n >= unit && exp < 4; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", b/div, "KMGTP"[exp])
}

func (p *Progress) setTotals(objects, bytes int64) {
	p.mu.Lock()
	p.totalObjects, p.totalBytes = objects, bytes
	p.mu.Unlock()
}

func (p *Progress) addBytes(n int64) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	p.doneBytes += n
	p.readBytes += n
	p.mu.Unlock()
}

func (p *Progress) objectDone(size, read int64) {
	p.mu.Lock()
	p.doneObjects++
	// A blob listed at one size may have been read at another (an
	// append blob still growing); count it as its listed size.
	p.doneBytes += size - read
	p.current = ""
	p.mu.Unlock()
}

func (p *Progress) objectSkipped(size int64) {
	p.mu.Lock()
	p.doneObjects++
	p.skippedObjects++
	p.doneBytes += size
	p.mu.Unlock()
}

func (p *Progress) objectFailed(size int64) {
	p.mu.Lock()
	p.doneObjects++
	p.failedObjects++
	p.current = ""
	p.mu.Unlock()
	_ = size
}

func (p *Progress) addMessages(n int64) {
	p.mu.Lock()
	p.messages += n
	p.mu.Unlock()
}

func (p *Progress) addAcked(n int64) {
	p.mu.Lock()
	p.acked += n
	p.mu.Unlock()
}

func (p *Progress) setCurrent(name string) {
	p.mu.Lock()
	p.current = name
	p.mu.Unlock()
}

// uncount takes back what re-read objects had contributed.
func (p *Progress) uncount(objects, bytes int64) {
	p.mu.Lock()
	p.rewinds++
	p.doneObjects -= objects
	p.doneBytes -= bytes
	p.mu.Unlock()
}

// RenderProgress shows p until ctx ends or stop is called: a progress bar
// with rate and ETA when out is a terminal (redrawn 4 times a second),
// otherwise one slog line per interval (0 means 10 s). stop renders the final state once and waits for
// the renderer to finish.
func RenderProgress(ctx context.Context, p *Progress, out io.Writer, logger *slog.Logger, interval time.Duration) (stop func()) {
	if interval <= 0 {
		interval = 10 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var draw func(final bool)
	if isTerminal(out) {
		interval = 250 * time.Millisecond
		bar := progressbar.NewOptions64(max(p.Snapshot().TotalBytes, 1),
			progressbar.OptionSetWriter(out),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(interval/2),
			progressbar.OptionSetRenderBlankState(true),
		)
		draw = func(final bool) {
			s := p.Snapshot()
			bar.ChangeMax64(max(s.TotalBytes, 1))
			bar.Describe(fmt.Sprintf("%d/%d objects, %d messages", s.DoneObjects, s.TotalObjects, s.Messages))
			_ = bar.Set64(s.DoneBytes)
			if final {
				_ = bar.Finish()
				fmt.Fprintln(out)
			}
		}
	} else {
		draw = func(final bool) {
			msg := "backfill progress"
			if final {
				msg = "backfill finished reading"
			}
			logger.InfoContext(ctx, msg, slog.Any("progress", p.Snapshot()))
		}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				draw(false)
			case <-ctx.Done():
				return
			case <-quit:
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
			draw(true)
		})
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
