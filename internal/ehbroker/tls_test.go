package ehbroker_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/Azure/go-amqp"

	"github.com/custody-audit/custody/internal/ehbroker"
	"github.com/custody-audit/custody/internal/entrafake"
)

const partitionPath = "audit/ConsumerGroups/$Default/Partitions/0"

// dialTLS opens an AMQPS connection and session to the broker's TLS
// listener, trusting its test CA.
func dialTLS(t *testing.T, b *ehbroker.Broker) *amqp.Session {
	t.Helper()
	ctx := testCtx(t)
	conn, err := amqp.Dial(ctx, "amqps://"+b.TLSAddr(), &amqp.ConnOptions{
		SASLType:  amqp.SASLTypeAnonymous(),
		TLSConfig: &tls.Config{RootCAs: b.RootCAs(), MinVersion: tls.VersionTLS12},
	})
	if err != nil {
		t.Fatalf("dial tls: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	sess, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	return sess
}

// putToken puts a token to $cbs the way the SDK does and returns the
// reply's status code and description.
func putToken(t *testing.T, sess *amqp.Session, typ, audience, token string) (int32, string) {
	t.Helper()
	ctx := testCtx(t)
	const reply = "cbs-reply-1"
	snd, err := sess.NewSender(ctx, "$cbs", nil)
	if err != nil {
		t.Fatalf("cbs sender: %v", err)
	}
	defer snd.Close(ctx)
	rcv, err := sess.NewReceiver(ctx, "$cbs", &amqp.ReceiverOptions{TargetAddress: reply, Credit: 1})
	if err != nil {
		t.Fatalf("cbs receiver: %v", err)
	}
	defer rcv.Close(ctx)
	replyTo := reply
	msg := &amqp.Message{
		Properties: &amqp.MessageProperties{MessageID: "put-1", ReplyTo: &replyTo},
		ApplicationProperties: map[string]any{
			"operation":  "put-token",
			"type":       typ,
			"name":       audience,
			"expiration": "0",
		},
		Value: token,
	}
	if err := snd.Send(ctx, msg, nil); err != nil {
		t.Fatalf("send put-token: %v", err)
	}
	res, err := rcv.Receive(ctx, nil)
	if err != nil {
		t.Fatalf("receive put-token reply: %v", err)
	}
	if res.Properties == nil || res.Properties.CorrelationID != "put-1" {
		t.Fatalf("reply properties %+v, want correlation id put-1", res.Properties)
	}
	code, _ := res.ApplicationProperties["status-code"].(int32)
	desc, _ := res.ApplicationProperties["status-description"].(string)
	return code, desc
}

// TestTLSListenerChecksTokens: on the AMQPS listener a link to the hub
// needs a token put to $cbs first; Entra ID tokens are verified (issuer,
// resource, expiry) and refused with 401 otherwise; SAS tokens pass as on
// the emulator; the refusal never echoes the token.
func TestTLSListenerChecksTokens(t *testing.T) {
	auth, err := entrafake.New(entrafake.Options{Resources: []string{ehbroker.EventHubsResource, "https://storage.azure.com"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(auth.Close)
	other, err := entrafake.New(entrafake.Options{Resources: []string{ehbroker.EventHubsResource}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	issue := func(a *entrafake.Authority, resource string, life time.Duration) string {
		tok, _, err := a.IssueToken("tenant", "app", resource, life)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := issue(auth, ehbroker.EventHubsResource+"/", time.Hour)
	cases := []struct {
		name, typ, token string
		audience         string
		wantCode         int32
		wantDesc         string
		attach           bool // the partition link attaches afterwards
	}{
		{"no token", "", "", "", 0, "", false},
		{"valid entra token", "jwt", good, "amqps://ns.servicebus.windows.net/" + partitionPath, 202, "Accepted", true},
		{"namespace-wide token", "jwt", good, "amqps://ns.servicebus.windows.net/", 202, "Accepted", true},
		{"token for another entity", "jwt", good, "amqps://ns.servicebus.windows.net/other-hub", 202, "Accepted", false},
		{"not a jwt", "jwt", "opaque-bearer-value", "amqps://ns/audit", 401, "malformed token", false},
		{"another issuer", "jwt", issue(other, ehbroker.EventHubsResource, time.Hour), "amqps://ns/audit", 401, "signature does not verify", false},
		{"another resource", "jwt", issue(auth, "https://storage.azure.com", time.Hour), "amqps://ns/audit", 401, "audience mismatch", false},
		{"expired", "jwt", issue(auth, ehbroker.EventHubsResource, -time.Second), "amqps://ns/audit", 401, "expired", false},
		{"tampered", "jwt", tamper(good), "amqps://ns/audit", 401, "signature does not verify", false},
		{"sas token", "servicebus.windows.net:sastoken", "SharedAccessSignature sr=x&sig=y&se=9999999999&skn=k", "amqps://ns/audit", 202, "Accepted", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1, TLS: true, Tokens: auth})
			sess := dialTLS(t, b)
			if tc.typ != "" {
				code, desc := putToken(t, sess, tc.typ, tc.audience, tc.token)
				if code != tc.wantCode || !strings.Contains(desc, tc.wantDesc) {
					t.Fatalf("put-token = %d %q, want %d containing %q", code, desc, tc.wantCode, tc.wantDesc)
				}
				if strings.Contains(desc, tc.token) {
					t.Fatalf("the reply echoes the token: %q", desc)
				}
			}
			ctx := testCtx(t)
			rcv, err := sess.NewReceiver(ctx, partitionPath, &amqp.ReceiverOptions{Credit: 10})
			if !tc.attach {
				var amqpErr *amqp.Error
				if !errors.As(err, &amqpErr) || amqpErr.Condition != amqp.ErrCondUnauthorizedAccess {
					t.Fatalf("attach without a covering token: err = %v, want amqp:unauthorized-access", err)
				}
				if st := b.TokenStats(); st.Unauthorized != 1 {
					t.Fatalf("token stats %+v, want one unauthorized attach", st)
				}
				return
			}
			if err != nil {
				t.Fatalf("attach after an accepted token: %v", err)
			}
			// Without a selector filter the link starts at the end.
			if _, err := b.Publish("0", []byte("event-0")); err != nil {
				t.Fatal(err)
			}
			m, err := rcv.Receive(ctx, nil)
			if err != nil {
				t.Fatalf("receive: %v", err)
			}
			if string(m.GetData()) != "event-0" {
				t.Fatalf("body %q", m.GetData())
			}
		})
	}
}

// tamper flips one character of the claims segment, keeping it base64url.
func tamper(tok string) string {
	i := strings.IndexByte(tok, '.') + 5
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// TestTLSListenerNeedsTrust: the AMQPS listener speaks TLS with a
// certificate only its test CA vouches for, and a TLS broker keeps serving
// plain AMQP with any SAS token on its first listener.
func TestTLSListenerNeedsTrust(t *testing.T) {
	b := startBroker(t, ehbroker.Config{EventHub: "audit", Partitions: 1, TLS: true, TLSHosts: []string{"ns.servicebus.windows.net"}})
	if b.TLSAddr() == "" || b.TLSAddr() == b.Addr() || b.RootCAs() == nil {
		t.Fatalf("tls addr %q, plain addr %q", b.TLSAddr(), b.Addr())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if c, err := amqp.Dial(ctx, "amqps://"+b.TLSAddr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous()}); err == nil {
		_ = c.Close()
		t.Fatal("dialled the TLS listener without trusting the test CA")
	}
	// The certificate names the namespace given in TLSHosts.
	c, err := amqp.Dial(ctx, "amqps://"+b.TLSAddr(), &amqp.ConnOptions{SASLType: amqp.SASLTypeAnonymous(),
		TLSConfig: &tls.Config{RootCAs: b.RootCAs(), ServerName: "ns.servicebus.windows.net", MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatalf("dial with the namespace as server name: %v", err)
	}
	_ = c.Close()

	// Plain listener: the emulator path, unchanged.
	if _, err := b.Publish("0", []byte("x")); err != nil {
		t.Fatal(err)
	}
	cc := newConsumer(t, b)
	if _, err := cc.GetEventHubProperties(ctx, nil); err != nil {
		t.Fatalf("plain listener: %v", err)
	}
	if st := b.TokenStats(); st.SASAccepted == 0 || st.JWTAccepted+st.JWTRefused+st.Unauthorized != 0 {
		t.Fatalf("token stats %+v, want SAS only", st)
	}
}
