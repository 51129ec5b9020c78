package ehbroker

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// tokenTypeJWT is the CBS token type of Entra ID access tokens; the SDK
// puts SAS tokens as "servicebus.windows.net:sastoken".
const tokenTypeJWT = "jwt"

// putToken handles a $cbs put-token request: an Entra ID token (type jwt)
// must pass Config.Tokens for EventHubsResource, anything else is taken as
// a SAS token and accepted, as the emulator does. An accepted token is
// recorded for its audience until it expires. Callers hold c.mu. The token
// never appears in the reply, the logs or the counters.
func (c *conn) putToken(typ, audience string, token any, expiration string) (int32, string) {
	path := audiencePath(audience)
	if typ != tokenTypeJWT {
		exp := time.Now().Add(24 * time.Hour)
		if secs, err := strconv.ParseInt(expiration, 10, 64); err == nil && secs > 0 {
			exp = time.Unix(secs, 0)
		}
		c.claims[path] = exp
		c.b.countToken(func(s *TokenStats) { s.SASAccepted++ })
		return 202, "Accepted"
	}
	tok, ok := token.(string)
	var (
		exp time.Time
		err error
	)
	switch {
	case !ok || tok == "":
		err = fmt.Errorf("the jwt token is not a non-empty string")
	case c.b.cfg.Tokens == nil:
		err = fmt.Errorf("this broker has no Entra ID token verifier")
	default:
		exp, err = c.b.cfg.Tokens.VerifyToken(tok, EventHubsResource)
	}
	if err != nil {
		c.b.countToken(func(s *TokenStats) { s.JWTRefused++ })
		c.log.Debug("put-token refused", "type", typ, "audience", audience, "err", err)
		return 401, "Unauthorized: " + err.Error()
	}
	c.claims[path] = exp
	c.b.countToken(func(s *TokenStats) { s.JWTAccepted++ })
	return 202, "Accepted"
}

// checkSecurityToken reports why the security_token of a $management
// request on the TLS listener is refused, or "" when it is accepted: a
// SAS token passes, anything else must pass Config.Tokens.
func (c *conn) checkSecurityToken(tok string) string {
	switch {
	case tok == "":
		return "the request carries no security_token"
	case strings.HasPrefix(tok, "SharedAccessSignature "):
		return ""
	case c.b.cfg.Tokens == nil:
		return "this broker has no Entra ID token verifier"
	}
	if _, err := c.b.cfg.Tokens.VerifyToken(tok, EventHubsResource); err != nil {
		return err.Error()
	}
	return ""
}

// authorize reports why a link to addr may not be attached, or "" when it
// may: on the TLS listener every node but $cbs needs an unexpired token
// whose audience covers the entity ($management is the hub's
// <hub>/$management). Callers hold c.mu.
func (c *conn) authorize(addr string) string {
	if !c.secure || addr == "$cbs" {
		return ""
	}
	entity := addr
	if addr == "$management" {
		entity = c.b.cfg.EventHub + "/$management"
	}
	now := time.Now()
	for path, exp := range c.claims {
		if now.Before(exp) && covers(path, entity) {
			return ""
		}
	}
	c.b.countToken(func(s *TokenStats) { s.Unauthorized++ })
	return fmt.Sprintf("unauthorized access to %q: put a valid token for it to $cbs first", entity)
}

// covers reports whether a token for the entity path covers entity: the
// namespace ("") covers everything, an entity itself and what lies below.
func covers(path, entity string) bool {
	p, e := strings.ToLower(path), strings.ToLower(entity)
	return p == "" || p == e || strings.HasPrefix(e, p+"/")
}

// audiencePath is the entity path of a CBS audience such as
// "amqps://<namespace>/<hub>/ConsumerGroups/$Default/Partitions/0".
func audiencePath(audience string) string {
	rest := audience
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[j+1:]
		} else {
			rest = ""
		}
	}
	return strings.Trim(rest, "/")
}

func (b *Broker) countToken(f func(*TokenStats)) {
	b.mu.Lock()
	f(&b.tokens)
	b.mu.Unlock()
}
