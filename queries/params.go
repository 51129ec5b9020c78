package queries

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/custody-audit/custody/storage/engine"
)

// Parameter kinds (Param.Kind).
const (
	kindCIDR     = "cidr"
	kindIP       = "ip"
	kindRegistry = "registry"
	kindDigest   = "digest"
	kindResource = "resource"
)

// maxValueLen bounds one parameter value (and one array element).
const maxValueLen = 4096

var (
	hostLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	digestRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	armIDRE   = regexp.MustCompile(`^/subscriptions/[0-9a-f-]{36}(/[^/\s]+)*$`)
)

// Bind validates value (in the form a user types it) against the
// parameter's type and kind and returns the ClickHouse text form to bind.
// Arrays are given comma-separated ("a, b"); the empty string is the empty
// array. Errors wrap ErrBadParam and name the parameter.
func (p Param) Bind(value string) (string, error) {
	out, err := p.bind(value)
	if err != nil {
		return "", fmt.Errorf("%w %s (%s): %w", ErrBadParam, p.Name, p.describe(), err)
	}
	return out, nil
}

func (p Param) describe() string {
	if p.Kind != "" {
		return p.Type + ", " + p.Kind
	}
	return p.Type
}

func (p Param) bind(value string) (string, error) {
	if bits, ok := intBits(p.Type); ok {
		return p.bindInt(value, bits, strings.HasPrefix(p.Type, "U"))
	}
	switch p.Type {
	case "String":
		if err := checkText(value); err != nil {
			return "", err
		}
		return p.bindString(value)
	case "DateTime64(6)":
		t, err := ParseTime(value)
		if err != nil {
			return "", err
		}
		return FormatTime(t), nil
	case "Array(String)":
		items, err := p.bindArray(value)
		if err != nil {
			return "", err
		}
		return engine.StringArray(items), nil
	}
	return "", fmt.Errorf("unsupported type %s", p.Type)
}

func (p Param) bindInt(value string, bits int, unsigned bool) (string, error) {
	value = strings.TrimSpace(value)
	if unsigned {
		u, err := strconv.ParseUint(value, 10, bits)
		if err != nil {
			return "", fmt.Errorf("%q is not a whole number from 0 to %d", value, uint64(math.MaxUint64)>>(64-bits))
		}
		if p.Max != nil && (u > math.MaxInt64 || int64(u) > *p.Max) {
			return "", fmt.Errorf("%d is above the maximum %d", u, *p.Max)
		}
		if p.Min != nil && u <= math.MaxInt64 && int64(u) < *p.Min {
			return "", fmt.Errorf("%d is below the minimum %d", u, *p.Min)
		}
		return strconv.FormatUint(u, 10), nil
	}
	n, err := strconv.ParseInt(value, 10, bits)
	if err != nil {
		return "", fmt.Errorf("%q is not a whole number of %d bits", value, bits)
	}
	if p.Min != nil && n < *p.Min {
		return "", fmt.Errorf("%d is below the minimum %d", n, *p.Min)
	}
	if p.Max != nil && n > *p.Max {
		return "", fmt.Errorf("%d is above the maximum %d", n, *p.Max)
	}
	return strconv.FormatInt(n, 10), nil
}

func (p Param) bindString(value string) (string, error) {
	switch p.Kind {
	case kindIP:
		if value == "" {
			return "", nil
		}
		a, err := netip.ParseAddr(strings.TrimSpace(value))
		if err != nil {
			return "", fmt.Errorf("%q is not an IP address", value)
		}
		return a.Unmap().String(), nil
	case kindDigest:
		d := strings.ToLower(strings.TrimSpace(value))
		if d == "" && !p.Required {
			return "", nil
		}
		if !digestRE.MatchString(d) {
			return "", fmt.Errorf("%q is not an image digest (want sha256: and 64 hex digits)", value)
		}
		return d, nil
	case kindResource:
		// Resource ids are stored lower-cased (event.Event.ResourceID);
		// a name is matched as given.
		r := strings.TrimSpace(value)
		if strings.HasPrefix(r, "/") {
			r = strings.TrimSuffix(strings.ToLower(r), "/")
			if !armIDRE.MatchString(r) {
				return "", fmt.Errorf("%q is not an Azure resource id (/subscriptions/<id>/...) or a resource name", value)
			}
		} else if strings.ContainsAny(r, "/ ") {
			return "", fmt.Errorf("%q is not an Azure resource id (/subscriptions/<id>/...) or a resource name", value)
		}
		return r, nil
	}
	return value, nil
}

func (p Param) bindArray(value string) ([]string, error) {
	var items []string
	for _, raw := range strings.Split(value, ",") {
		it := strings.TrimSpace(raw)
		if it == "" {
			continue
		}
		if err := checkText(it); err != nil {
			return nil, err
		}
		switch p.Kind {
		case kindCIDR:
			pfx, err := parsePrefix(it)
			if err != nil {
				return nil, err
			}
			it = pfx
		case kindRegistry:
			h, err := parseRegistry(it)
			if err != nil {
				return nil, err
			}
			it = h
		}
		items = append(items, it)
	}
	if len(items) > 1000 {
		return nil, fmt.Errorf("%d values; at most 1000", len(items))
	}
	return items, nil
}

// checkText accepts UTF-8 text without NUL or other control characters
// except tab.
func checkText(s string) error {
	if len(s) > maxValueLen {
		return fmt.Errorf("value of %d bytes is longer than %d", len(s), maxValueLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("value %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return fmt.Errorf("value %q contains control character %U", s, r)
		}
	}
	return nil
}

// parsePrefix accepts a CIDR prefix or a single address and returns the
// canonical prefix (host bits cleared).
func parsePrefix(s string) (string, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%q is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32)", s)
		}
		if p.Addr().Is4In6() {
			return "", fmt.Errorf("%q: write IPv4 ranges in IPv4 form", s)
		}
		return p.Masked().String(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", fmt.Errorf("%q is not an IP range in CIDR form (e.g. 10.0.0.0/8, 2001:db8::/32) or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()).String(), nil
}

// parseRegistry accepts a registry host name, optionally with a port or
// a leading "*." (any subdomain), and returns it lower-cased.
func parseRegistry(s string) (string, error) {
	h := strings.ToLower(s)
	bad := func() (string, error) {
		return "", fmt.Errorf("%q is not a registry host name (e.g. myacr.azurecr.io, *.azurecr.io, localhost:5000)", s)
	}
	wild := strings.HasPrefix(h, "*.")
	host := strings.TrimPrefix(h, "*.")
	if hp, port, ok := strings.Cut(host, ":"); ok {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || wild {
			return bad()
		}
		host = hp
	}
	if host == "" || len(host) > 253 {
		return bad()
	}
	for _, l := range strings.Split(host, ".") {
		if !hostLabel.MatchString(l) {
			return bad()
		}
	}
	return h, nil
}

func intBits(typ string) (int, bool) {
	t := strings.TrimPrefix(strings.TrimPrefix(typ, "U"), "Int")
	if !strings.HasPrefix(typ, "UInt") && !strings.HasPrefix(typ, "Int") {
		return 0, false
	}
	switch t {
	case "8":
		return 8, true
	case "16":
		return 16, true
	case "32":
		return 32, true
	case "64":
		return 64, true
	}
	return 0, false
}

func isIntType(typ string) bool {
	_, ok := intBits(typ)
	return ok
}

// ParseTime reads a time as users write it: RFC 3339
// ("2025-05-06T09:00:00Z", with an offset or fraction), ClickHouse's form
// read as UTC ("2025-05-06 09:00:00[.ffffff]") or a date ("2025-05-06").
func ParseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time (want RFC 3339 such as 2025-05-06T09:00:00Z, or 2025-05-06 09:00:00 UTC, or 2025-05-06)", s)
}

// FormatTime renders t in the text form DateTime64(6) parameters take.
func FormatTime(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000000")
}
