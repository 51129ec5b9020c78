package eventhubs_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"

	"github.com/custody-audit/custody/internal/ehbroker"
)

// sendWithProducer sends n events in one batch with the real ProducerClient.
func sendWithProducer(t *testing.T, b *ehbroker.Broker, key string, n int) {
	t.Helper()
	ctx := t.Context()
	pc, err := azeventhubs.NewProducerClientFromConnectionString(b.ConnectionString(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	batch, err := pc.NewEventDataBatch(ctx, &azeventhubs.EventDataBatchOptions{PartitionKey: &key})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := batch.AddEventData(&azeventhubs.EventData{Body: fmt.Appendf(nil, "event %d", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := pc.SendEventDataBatch(ctx, batch, nil); err != nil {
		t.Fatalf("send: %v", err)
	}
}
