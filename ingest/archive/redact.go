package archive

import (
	"net/url"
	"regexp"
	"strings"
)

// secretPattern matches the secret-bearing parts of connection strings, SAS
// query strings and Authorization headers as they can appear inside SDK
// error text.
func secretPattern() *regexp.Regexp {
	return regexp.MustCompile(`(?i)((?:AccountKey|SharedAccessKey|SharedAccessSignature)=)[^;&\s"']+|((?:[?&]|\b)sig=)[^&\s"']+|(Authorization:\s*(?:Bearer|SharedKey)\s+)\S+`)
}

// Redact replaces secrets (account keys, SAS signatures, bearer tokens) in s
// with "REDACTED".
func Redact(s string) string {
	if !strings.ContainsAny(s, "=:") {
		return s
	}
	return secretPattern().ReplaceAllString(s, "${1}${2}${3}REDACTED")
}

// RedactURL drops the query string (where a SAS lives) from a URL, keeping
// a marker that one was there.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return Redact(raw)
	}
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.User = nil
	return u.String()
}

// redactedError keeps the chain for errors.Is/As but prints without secrets.
type redactedError struct{ err error }

func (e redactedError) Error() string { return Redact(e.err.Error()) }
func (e redactedError) Unwrap() error { return e.err }

func redactErr(err error) error {
	if err == nil {
		return nil
	}
	return redactedError{err}
}
