package eventhubs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custody-audit/custody/ingest/eventhubs"
	"github.com/custody-audit/custody/internal/ehbroker"
)

const testKey = "c2VjcmV0LWtleS1kby1ub3QtbG9n" // distinctive; must never surface

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSecretsNeverLeak(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1})
	publish(t, b, "0", 0, 20)
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	cfg := testConfig(b)
	cfg.ConnectionString = strings.Replace(b.ConnectionString(), "SharedAccessKey=v", "SharedAccessKey="+testKey, 1)
	check := func(what, s string) {
		t.Helper()
		if strings.Contains(s, testKey) {
			t.Errorf("%s leaks the key: %s", what, s)
		}
	}

	// Printing and logging the config.
	check("String", cfg.String())
	check("%v", fmt.Sprintf("%v", cfg))
	check("%+v", fmt.Sprintf("%+v", cfg))
	check("%#v", fmt.Sprintf("%#v", cfg))
	logger.Info("config", "cfg", cfg)

	// Validation errors of a config holding the key.
	bad := cfg
	bad.StartPosition = "yesterday"
	_, err := eventhubs.New(bad, nil, logger)
	check("validation error", fmt.Sprint(err))
	bad = cfg
	bad.ConnectionString = "SharedAccessKey=" + testKey
	_, err = eventhubs.New(bad, nil, logger)
	check("malformed connection string error", fmt.Sprint(err))

	// Connect against a broker that refuses: the SDK's error.
	b.Refuse(true)
	s, err := eventhubs.New(cfg, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	err = s.Connect(ctx)
	if err == nil {
		t.Fatal("connect to a refusing broker succeeded")
	}
	check("connect error", err.Error())
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		check("unwrapped connect error", u.Error())
	}
	b.Refuse(false)

	// A normal run with a drop and a nack, logged at debug level.
	if err := s.Connect(ctx); err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer s.Close(context.Background())
	_, ack, err := s.ReadBatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack(ctx, fmt.Errorf("store down (connection %s)", cfg)); err != nil {
		t.Fatal(err)
	}
	b.DropConnections()
	c := newCollector(t, s)
	c.readN(20)
	c.expectSeq(s.Stream("0"), 0, 19)
	if err := s.Close(ctx); err != nil {
		check("close error", err.Error())
	}

	check("logs", logs.String())
	if !strings.Contains(logs.String(), "[REDACTED]") {
		t.Errorf("logs never show the redacted config; the test did not log it: %s", logs.String())
	}
}
