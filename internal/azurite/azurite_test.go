package azurite_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/custody-audit/custody/internal/azurite"
)

func TestStartRoundTrip(t *testing.T) {
	inst := azurite.Start(t)
	ctx := t.Context()

	if _, err := inst.Client.CreateContainer(ctx, "probe", nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	want := []byte("{\"records\":[]}\n")
	if _, err := inst.Client.UploadBuffer(ctx, "probe", "a/b/PT1H.json", want, nil); err != nil {
		t.Fatalf("upload: %v", err)
	}

	// A second client built only from the connection string sees the blob.
	c, err := azblob.NewClientFromConnectionString(inst.ConnectionString, nil)
	if err != nil {
		t.Fatalf("client from connection string: %v", err)
	}
	got := download(ctx, t, c, "probe", "a/b/PT1H.json")
	if !bytes.Equal(got, want) {
		t.Fatalf("downloaded %q, want %q", got, want)
	}
}

func TestInstancesAreIsolated(t *testing.T) {
	a := azurite.Start(t)
	b := azurite.Start(t)
	if a.ServiceURL == b.ServiceURL {
		t.Fatalf("two instances share %s", a.ServiceURL)
	}
	ctx := t.Context()
	if _, err := a.Client.CreateContainer(ctx, "only-in-a", nil); err != nil {
		t.Fatalf("create container: %v", err)
	}
	pager := b.Client.NewListContainersPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatalf("list containers: %v", err)
		}
		for _, c := range page.ContainerItems {
			if *c.Name == "only-in-a" {
				t.Fatalf("container created in one instance is visible in the other")
			}
		}
	}
}

func download(ctx context.Context, t *testing.T, c *azblob.Client, container, name string) []byte {
	t.Helper()
	resp, err := c.DownloadStream(ctx, container, name, nil)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return b
}
