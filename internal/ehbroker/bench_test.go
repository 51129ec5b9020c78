package ehbroker_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/custody-audit/custody/internal/ehbroker"
)

// BenchmarkBrokerDeliver measures the broker alone: 1.2 KB events from one
// partition to a raw go-amqp receiver with 5000 credits.
func BenchmarkBrokerDeliver(b *testing.B) {
	br := startBroker(b, ehbroker.Config{EventHub: "audit", Partitions: 1, Retention: 100000})
	body := bytes.Repeat([]byte("x"), 1200)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	conn, err := amqp.Dial(ctx, "amqp://"+br.Addr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	r, err := sess.NewReceiver(ctx, "audit/ConsumerGroups/$Default/Partitions/0", &amqp.ReceiverOptions{
		Credit:  5000,
		Filters: []amqp.LinkFilter{amqp.NewSelectorFilter("amqp.annotation.x-opt-offset > '-1'")},
	})
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([][]byte, 1000)
	for i := range chunk {
		chunk[i] = body
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		n := min(len(chunk), b.N-done)
		if _, err := br.Publish("0", chunk[:n]...); err != nil {
			b.Fatal(err)
		}
		for range n {
			if _, err := r.Receive(ctx, nil); err != nil {
				b.Fatal(err)
			}
		}
		done += n
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
