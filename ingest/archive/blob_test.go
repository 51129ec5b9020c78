package archive_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/custody-audit/custody/ingest"
	"github.com/custody-audit/custody/ingest/archive"
	"github.com/custody-audit/custody/internal/azurite"
)

// uploadTree puts each fixture file in the container named by its first path
// segment, under the rest of its path (as diagnostic settings and Capture
// lay blobs out).
func uploadTree(t *testing.T, inst *azurite.Instance, files map[string][]byte) {
	t.Helper()
	ctx := t.Context()
	made := map[string]bool{}
	for rel, b := range files {
		cont, name, _ := strings.Cut(rel, "/")
		if !made[cont] {
			if _, err := inst.Client.CreateContainer(ctx, cont, nil); err != nil {
				t.Fatalf("create container %s: %v", cont, err)
			}
			made[cont] = true
		}
		if _, err := inst.Client.UploadBuffer(ctx, cont, name, b, nil); err != nil {
			t.Fatalf("upload %s: %v", rel, err)
		}
	}
}

func noRetry() *policy.ClientOptions {
	return &policy.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}}
}

func TestBlobBackfillMatchesLocal(t *testing.T) {
	inst := azurite.Start(t)
	files := fixtureTree(t)
	uploadTree(t, inst, files)

	// The same objects read from disk, for comparison.
	root := t.TempDir()
	writeTree(t, root, files)

	containers := []string{"insights-logs-networksecuritygrouprulecounter", "insights-activity-logs", "capture", "bodies"}
	for _, cont := range containers {
		t.Run(cont, func(t *testing.T) {
			store, err := archive.NewBlob(archive.BlobConfig{ConnectionString: inst.ConnectionString, Container: cont, ClientOptions: noRetry()})
			if err != nil {
				t.Fatal(err)
			}
			src, err := archive.New(store, archive.Config{Now: fixedNow, MaxBatchMessages: 2}, archive.Resume{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := drain(t, src)
			if err != nil {
				t.Fatal(err)
			}
			want, err := drain(t, newLocal(t, archive.Config{}, archive.Resume{}, root+"/"+cont))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || len(got) != len(want) {
				t.Fatalf("%d messages from Blob, %d from disk", len(got), len(want))
			}
			for i := range got {
				g, w := got[i], want[i]
				blobName := strings.TrimPrefix(w.Stream, fileStream(root, cont)+"/")
				if g.Stream != "archive/"+azurite.AccountName+"/"+cont+"/"+blobName {
					t.Errorf("stream %q", g.Stream)
				}
				if g.Position != cont+"/"+blobName+strings.TrimPrefix(w.Position, w.Attributes[archive.AttrObject]) {
					t.Errorf("position %q (disk: %q)", g.Position, w.Position)
				}
				if g.Offset != w.Offset || g.Format != w.Format || !bytes.Equal(g.Body, w.Body) || !g.Enqueued.Equal(w.Enqueued) {
					t.Errorf("message %d differs: blob %s#%d %s, disk %s#%d %s", i, g.Stream, g.Offset, g.Format, w.Stream, w.Offset, w.Format)
				}
			}
			snap := src.Progress().Snapshot()
			if snap.DoneBytes != snap.TotalBytes || snap.DoneObjects != snap.TotalObjects {
				t.Errorf("progress = %+v", snap)
			}
		})
	}
}

func TestBlobPrefixRangeAndResume(t *testing.T) {
	inst := azurite.Start(t)
	files := fixtureTree(t)
	// Three hours of the same resource in one container.
	const cont = "insights-logs-kube-audit"
	base := "resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1/y=2026/m=11/d=27/"
	tree := map[string][]byte{}
	// Each hour's blob has its own content (trailing spaces after the first
	// record), as real hours do: byte-identical blobs are one archive
	// stored at two paths, which the source skips.
	for i, h := range []string{"09", "10", "11"} {
		tree[cont+"/"+base+"h="+h+"/m=00/PT1H.json"] = bytes.Replace(files[nsgBlob], []byte("\n"), []byte(strings.Repeat(" ", i+1)+"\n"), 1)
	}
	tree[cont+"/other/PT1H.json"] = files[nsgBlob]
	uploadTree(t, inst, tree)

	store, err := archive.NewBlob(archive.BlobConfig{ConnectionString: inst.ConnectionString, Container: cont, Prefix: "resourceId=/", ClientOptions: noRetry()})
	if err != nil {
		t.Fatal(err)
	}
	h10 := "archive/" + azurite.AccountName + "/" + cont + "/" + base + "h=10/m=00/PT1H.json"
	cfg := archive.Config{
		Now:   fixedNow,
		Range: archive.TimeRange{From: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)},
	}
	src, err := archive.New(store, cfg, archive.Resume{Positions: map[string]int64{h10: 1}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := drain(t, src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Position[strings.Index(m.Position, "h="):])
	}
	want := []string{"h=10/m=00/PT1H.json line 3", "h=11/m=00/PT1H.json line 1", "h=11/m=00/PT1H.json line 3"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("positions %q, want %q", got, want)
	}
	if n := src.Progress().Snapshot().TotalObjects; n != 2 {
		t.Errorf("selected %d objects, want 2 (prefix excludes other/, range excludes h=09)", n)
	}
}

func TestBlobSASAndSecretsStayOut(t *testing.T) {
	inst := azurite.Start(t)
	files := fixtureTree(t)
	uploadTree(t, inst, map[string][]byte{capFile: files[capFile]})

	svc, err := service.NewClientWithSharedKeyCredential(inst.ServiceURL+"/", inst.Credential, nil)
	if err != nil {
		t.Fatal(err)
	}
	sasURL, err := svc.NewContainerClient("capture").GetSASURL(sas.ContainerPermissions{Read: true, List: true}, time.Now().Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(sasURL)
	if err != nil {
		t.Fatal(err)
	}
	sig := u.Query().Get("sig")
	if sig == "" {
		t.Fatalf("SAS URL without signature")
	}

	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// A good SAS reads the container.
	good := archive.BlobConfig{ContainerURL: sasURL, ClientOptions: noRetry()}
	logger.Info("config", slog.Any("blob", good))
	store, err := archive.NewBlob(good)
	if err != nil {
		t.Fatal(err)
	}
	src, err := archive.New(store, archive.Config{Now: fixedNow}, archive.Resume{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := drain(t, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || msgs[0].Stream != "archive/"+azurite.AccountName+"/capture/"+strings.TrimPrefix(capFile, "capture/") {
		t.Fatalf("%d messages, first stream %q", len(msgs), msgs[0].Stream)
	}

	// A tampered SAS fails, and neither signature shows in the error.
	q := u.Query()
	q.Set("sig", strings.Repeat("A", len(sig)-1)+"=")
	u.RawQuery = q.Encode()
	badSig := q.Get("sig")
	bad, err := archive.NewBlob(archive.BlobConfig{ContainerURL: u.String(), ClientOptions: noRetry()})
	if err != nil {
		t.Fatal(err)
	}
	badSrc, err := archive.New(bad, archive.Config{}, archive.Resume{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	errSAS := badSrc.Connect(context.Background())
	if errSAS == nil {
		t.Fatal("listing with a tampered SAS succeeded")
	}
	// A connection string with a wrong key fails on download too.
	wrongKey := strings.Replace(inst.ConnectionString, azurite.AccountKey, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=", 1)
	wk, err := archive.NewBlob(archive.BlobConfig{ConnectionString: wrongKey, Container: "capture", ClientOptions: noRetry()})
	if err != nil {
		t.Fatal(err)
	}
	wkSrc, err := archive.New(wk, archive.Config{}, archive.Resume{}, logger)
	if err != nil {
		t.Fatal(err)
	}
	err2 := wkSrc.Connect(context.Background())
	if err2 == nil {
		t.Fatal("listing with a wrong key succeeded")
	}
	logger.Error("failures", slog.String("sas", errSAS.Error()), slog.String("key", err2.Error()))
	logger.Info("wrong key config", slog.Any("blob", archive.BlobConfig{ConnectionString: wrongKey, Container: "capture"}))

	t.Logf("sas error: %v\nkey error: %v", errSAS, err2)
	out := logs.String() + errSAS.Error() + err2.Error()
	for _, secret := range []string{sig, url.QueryEscape(sig), badSig, url.QueryEscape(badSig), azurite.AccountKey, "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk="} {
		if strings.Contains(out, secret) {
			t.Errorf("secret %q leaked into logs or errors:\n%s", secret[:8]+"...", out)
		}
	}
	if !strings.Contains(out, `"auth":"sas"`) || !strings.Contains(out, `"auth":"connection-string"`) {
		t.Errorf("config log lacks the auth kind:\n%s", logs.String())
	}
}

func TestBlobDownloadInterruptedIsAnError(t *testing.T) {
	inst := azurite.Start(t)
	files := fixtureTree(t)
	uploadTree(t, inst, map[string][]byte{oldBlob: files[oldBlob]})
	store, err := archive.NewBlob(archive.BlobConfig{ConnectionString: inst.ConnectionString, Container: "insights-activity-logs", ClientOptions: noRetry()})
	if err != nil {
		t.Fatal(err)
	}
	src, err := archive.New(store, archive.Config{}, archive.Resume{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := src.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, _, err := src.ReadBatch(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadBatch with a cancelled context: %v", err)
	}
	// Nothing was consumed: a fresh context reads everything.
	batch, _, err := src.ReadBatch(context.Background())
	if err != nil || len(batch) != 2 {
		t.Fatalf("after cancel: %d messages, %v", len(batch), err)
	}
	if _, _, err := src.ReadBatch(context.Background()); !errors.Is(err, ingest.ErrEndOfInput) {
		t.Fatalf("want end of input, got %v", err)
	}
}
