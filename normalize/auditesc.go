package normalize

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
)

// This file reads the audit event of an AKS kube-audit record straight out
// of the escaped properties.log string, in the pass that validates the
// string. The general path decodes the string into a buffer and parses the
// buffer: two passes over every byte, and the first stops at each of the
// hundred-odd \" of an event. Here the escaped text is read as the JSON it
// holds: \" delimits a string, structural characters and literals stand as
// they are, and whitespace is ' ' or an escaped \n, \r or \t.
//
// The reader handles the form JSON encoders write and gives up on anything
// else: an outer \u escape that stands for a quote, a backslash, a control
// character or half a surrogate pair, an escape inside a key, a control
// character inside an inner string, nesting near the limit, or any syntax
// error. Giving up costs nothing but time: the caller then takes the
// general path, which yields the same event for valid input and the
// precise error for invalid input. So every input the reader accepts is
// one the general path accepts too, with the same result; the tests and
// fuzz targets in auditesc_internal_test.go check exactly that.

// escReader reads a JSON document escaped inside a JSON string. b is the
// outer document and i an offset inside the string's content.
type escReader struct {
	b  []byte
	i  int
	sc *strCache
	// esc (may be nil) caches strings that must be decoded twice, keyed
	// by their escaped bytes.
	esc *strCache
	// tmp is scratch space for strings that must be decoded.
	tmp []byte
}

// ws skips whitespace: ' ' or an escaped \n, \r or \t.
func (r *escReader) ws() {
	b, i := r.b, r.i
	if i+1 < len(b) && b[i] != ' ' && (b[i] != '\\' || b[i+1] == '"') {
		return // the usual case: a token or a string's \"
	}
	for i < len(b) {
		switch b[i] {
		case ' ':
			i++
			continue
		case '\\':
			if i+1 < len(b) && (b[i+1] == 'n' || b[i+1] == 'r' || b[i+1] == 't') {
				i += 2
				continue
			}
		}
		break
	}
	r.i = i
}

// atQuote reports whether an escaped quote \" starts at r.i.
func (r *escReader) atQuote() bool {
	return r.i+1 < len(r.b) && r.b[r.i] == '\\' && r.b[r.i+1] == '"'
}

// str reads the string starting at the \" at r.i and returns its
// content. plain means the content holds no escape at either level, so
// the content bytes are the decoded string. ok is false when the reader
// gives up.
func (r *escReader) str() (content []byte, plain, ok bool) {
	b := r.b
	s := r.i + 2
	i := s
	plain = true
	for {
		// nextSpecial, written out: a string costs no call.
		for i+8 <= len(b) {
			if m := specialMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
			i++
		}
		// A raw '"' ends the outer string inside this one, a control
		// character is invalid: either way, give up.
		if i+1 >= len(b) || b[i] != '\\' {
			return nil, false, false
		}
		switch b[i+1] {
		case '"':
			r.i = i + 2
			return b[s:i], plain, true
		case '/': // an escaped '/', one level
			i += 2
		case 'u': // a character escaped at the outer level
			if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
				return nil, false, false
			}
			c := hexVal(b[i+2 : i+6])
			if c < 0x20 || c == '"' || c == '\\' || utf16.IsSurrogate(c) {
				return nil, false, false
			}
			i += 6
		case '\\': // a backslash of the inner document: an inner escape
			if i+2 >= len(b) {
				return nil, false, false
			}
			switch b[i+2] {
			case '\\': // inner \" or \\ or \/, its second byte escaped again
				if i+3 >= len(b) || (b[i+3] != '"' && b[i+3] != '\\' && b[i+3] != '/') {
					return nil, false, false
				}
				i += 4
			case '/', 'b', 'f', 'n', 'r', 't':
				i += 3
			case 'u':
				if i+7 > len(b) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) || !isHex(b[i+6]) {
					return nil, false, false
				}
				i += 7
			default:
				return nil, false, false
			}
		default:
			// \n, \t, ... would put a control character inside the inner
			// string: invalid, left to the general path.
			return nil, false, false
		}
		plain = false
	}
}

// skip validates the value at r.i (after whitespace) at nesting depth
// and moves past it.
func (r *escReader) skip(depth int) bool {
	r.ws()
	b := r.b
	if r.i >= len(b) {
		return false
	}
	switch c := b[r.i]; {
	case c == '\\':
		if !r.atQuote() {
			return false
		}
		_, _, ok := r.str()
		return ok
	case c == '{':
		if depth >= maxDepth-1 {
			return false
		}
		r.i++
		r.ws()
		if r.i < len(b) && b[r.i] == '}' {
			r.i++
			return true
		}
		for {
			r.ws()
			if !r.atQuote() {
				return false
			}
			if _, _, ok := r.str(); !ok {
				return false
			}
			if !r.colon() || !r.skip(depth+1) {
				return false
			}
			if end, ok := r.next('}'); !ok || end {
				return ok
			}
		}
	case c == '[':
		if depth >= maxDepth-1 {
			return false
		}
		r.i++
		r.ws()
		if r.i < len(b) && b[r.i] == ']' {
			r.i++
			return true
		}
		for {
			if !r.skip(depth + 1) {
				return false
			}
			if end, ok := r.next(']'); !ok || end {
				return ok
			}
		}
	case c == 't':
		return r.lit("true")
	case c == 'f':
		return r.lit("false")
	case c == 'n':
		return r.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		end, err := scanNumber(b, r.i)
		if err != nil {
			return false
		}
		r.i = end
		return true
	}
	return false
}

func (r *escReader) lit(s string) bool {
	end, err := literal(r.b, r.i, s)
	r.i = end
	return err == nil
}

// colon reads the ':' after a key.
func (r *escReader) colon() bool {
	if r.i < len(r.b) && r.b[r.i] == ':' {
		r.i++
		return true
	}
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == ':' {
		r.i++
		return true
	}
	return false
}

// next reads the ',' or the closing byte after a member or element.
func (r *escReader) next(closing byte) (end, ok bool) {
	if r.i < len(r.b) {
		// The usual case, no whitespace: decided before ws is called.
		switch r.b[r.i] {
		case ',':
			r.i++
			return false, true
		case closing:
			r.i++
			return true, true
		}
	}
	r.ws()
	if r.i >= len(r.b) {
		return false, false
	}
	switch r.b[r.i] {
	case ',':
		r.i++
		return false, true
	case closing:
		r.i++
		return true, true
	}
	return false, false
}

// objStart reads the '{' of an object and reports whether it is empty.
func (r *escReader) objStart() (empty, ok bool) {
	r.ws()
	if r.i >= len(r.b) || r.b[r.i] != '{' {
		return false, false
	}
	r.i++
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == '}' {
		r.i++
		return true, true
	}
	return false, true
}

// key reads a member key and the ':' after it (not the whitespace after
// that). Keys with escapes are left to the general path.
func (r *escReader) key() ([]byte, bool) {
	if !r.atQuote() {
		r.ws()
		if !r.atQuote() {
			return nil, false
		}
	}
	// The usual key, plain and followed by ':', read here without a
	// call to str.
	b := r.b
	s := r.i + 2
	i := s
	for i+8 <= len(b) {
		if m := specialMask(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			if i+2 < len(b) && b[i] == '\\' && b[i+1] == '"' && b[i+2] == ':' {
				r.i = i + 3
				return b[s:i], true
			}
			break
		}
		i += 8
	}
	k, plain, ok := r.str()
	if !ok || !plain || !r.colon() {
		return nil, false
	}
	return k, true
}

// value reads the value at r.i at nesting depth and returns it as a
// rawVal: the content of a plain string, else the escaped bytes.
func (r *escReader) value(depth int) (rawVal, bool) {
	if !r.atQuote() {
		r.ws()
	}
	start := r.i
	if r.atQuote() {
		c, plain, ok := r.str()
		if !ok {
			return rawVal{}, false
		}
		if plain {
			return rawVal{b: c, plain: true}, true
		}
		return rawVal{b: r.b[start:r.i], escaped: true}, true
	}
	if !r.skip(depth) {
		return rawVal{}, false
	}
	v := r.b[start:r.i]
	if v[0] == '{' || v[0] == '[' {
		return rawVal{b: v, escaped: true}, true
	}
	// Numbers and literals hold no escapes: their bytes are their JSON.
	return rawVal{b: v}, true
}

// cached is sc.str of the value: strings shared through the cache, other
// scalars as str makes them.
func (r *escReader) cached(v rawVal) string {
	switch {
	case v.plain:
		return r.sc.lookup(v.b, false)
	case v.escaped:
		if v.b[0] == '\\' && r.esc != nil { // a string, \"...\"
			// A string with escapes at either level: keyed by its
			// escaped bytes in a cache of its own, since the same bytes
			// read once decoded mean something else.
			if s, ok := r.esc.get(v.b); ok {
				return s
			}
			r.tmp = unescape(r.tmp[:0], v.b)
			s := str(r.tmp)
			r.esc.put(v.b, s)
			return s
		}
		r.tmp = unescape(r.tmp[:0], v.b)
		return r.sc.str(r.tmp)
	}
	return str(v.b)
}

// escStringList is sc.stringList of an array v that stands, escaped,
// inside a JSON string and that the escaped reader has validated. ok is
// false when it gives up.
func escStringList(v []byte, sc *strCache) ([]string, bool) {
	if sc == nil {
		return nil, false
	}
	r := escReader{b: v, sc: sc}
	r.ws()
	if r.i >= len(v) || v[r.i] != '[' {
		return nil, false
	}
	r.i++
	r.ws()
	var buf [8]string
	out := buf[:0]
	if r.i < len(v) && v[r.i] == ']' {
		r.i++
	} else {
		for {
			e, ok := r.value(maxDepth - 2)
			if !ok {
				return nil, false
			}
			if e.plain || (e.escaped && e.b[0] == '\\') {
				out = append(out, r.cached(e))
			}
			end, ok := r.next(']')
			if !ok {
				return nil, false
			}
			if end {
				break
			}
		}
	}
	if r.ws(); r.i != len(v) {
		return nil, false
	}
	if len(out) == 0 {
		return nil, true
	}
	return append([]string(nil), out...), true
}

// escList is escStringList(v, c) for an array v that repeats (a user's
// groups repeat with the user): a repeat is copied from the cache instead
// of being read again. Each call returns a list of its own.
func (c *strCache) escList(v []byte) ([]string, bool) {
	if c == nil {
		return nil, false
	}
	set := &c.lists[strSlot(v)&(listCacheSets-1)]
	var l []string
	switch {
	case set[0].raw == string(v) && set[0].raw != "":
		l = set[0].list
	case set[1].raw == string(v) && set[1].raw != "":
		l = set[1].list
	default:
		l, ok := escStringList(v, c)
		if ok && len(v) <= maxCachedLen {
			// The cache keeps a copy: l is the caller's.
			set[1], set[0] = set[0], cachedList{raw: string(v), list: append([]string(nil), l...)}
		}
		return l, ok
	}
	if len(l) == 0 {
		return nil, true
	}
	return append([]string(nil), l...), true
}

// timeVal is timeBytes of the value: the decoded content of a timestamp.
func (r *escReader) timeVal(v rawVal) []byte {
	if v.plain {
		return v.b
	}
	j := v.json()
	if !isString(j) {
		return []byte(str(j))
	}
	s, _ := strBytes(j)
	return s
}

// parseAuditEsc reads the audit event escaped in the JSON string whose
// opening quote is at b[q], filling a as parseAudit would from the decoded
// string, and returns the offset past the closing quote. ok is false when
// the reader gave up; a is then to be discarded.
func parseAuditEsc(b []byte, q int, a *auditEvent, sc, esc *strCache, tmp []byte) (end int, ok bool, tmpOut []byte) {
	if sc == nil {
		return 0, false, tmp
	}
	r := escReader{b: b, i: q + 1, sc: sc, esc: esc, tmp: tmp}
	ok = r.audit(a)
	if ok && r.i < len(b) && b[r.i] == '"' {
		return r.i + 1, true, r.tmp
	}
	return 0, false, r.tmp
}

// audit reads the event object and the whitespace after it.
func (r *escReader) audit(a *auditEvent) bool {
	empty, ok := r.objStart()
	if !ok {
		return false
	}
	for !empty {
		k, ok := r.key()
		if !ok {
			return false
		}
		// One switch on the key per member; a value's reader gives up
		// with ok false, leaving a to be discarded.
		var v rawVal
		switch string(k) {
		case "apiVersion":
			v, ok = r.value(1)
			a.apiVersionRaw = v
		case "level":
			v, ok = r.value(1)
			a.levelRaw = v
		case "auditID":
			v, ok = r.value(1)
			a.auditIDRaw = v
		case "stage":
			if v, ok = r.value(1); ok {
				a.stage = r.cached(v)
			}
		case "requestURI":
			v, ok = r.value(1)
			a.requestURIRaw = v
		case "verb":
			if v, ok = r.value(1); ok {
				a.verb = r.cached(v)
			}
		case "userAgent":
			v, ok = r.value(1)
			a.userAgentRaw = v
		case "requestReceivedTimestamp":
			if v, ok = r.value(1); ok {
				a.requestReceived = r.timeVal(v)
			}
		case "stageTimestamp":
			if v, ok = r.value(1); ok {
				a.stageTS = r.timeVal(v)
			}
		case "timestamp":
			if v, ok = r.value(1); ok {
				a.timestamp = r.timeVal(v)
			}
		case "sourceIPs":
			v, ok = r.value(1)
			a.sourceIPsRaw = v
		case "requestObject":
			v, ok = r.value(1)
			a.requestObjectRaw = v
		case "responseObject":
			v, ok = r.value(1)
			a.respObjectRaw = v
		case "user":
			if !r.objectAhead() {
				return false // parseAudit's "expected object" error
			}
			a.user, ok = r.user()
		case "impersonatedUser":
			if !r.objectAhead() {
				ok = r.skip(1)
				break
			}
			var u k8sUser
			u, ok = r.user()
			a.impersonated, a.hasImpersonated = u, u.username != ""
		case "objectRef":
			if !r.objectAhead() {
				ok = r.skip(1)
				break
			}
			ok = r.objectRef(a)
		case "responseStatus":
			if !r.objectAhead() {
				ok = r.skip(1)
				break
			}
			ok = r.status(a)
		case "annotations":
			if !r.objectAhead() {
				ok = r.skip(1)
				break
			}
			ok = r.annotations(a)
		default:
			ok = r.skip(1)
		}
		if !ok {
			return false
		}
		if empty, ok = r.next('}'); !ok {
			return false
		}
	}
	r.ws()
	return true
}

// objectAhead skips whitespace and reports whether an object starts at
// r.i.
func (r *escReader) objectAhead() bool {
	r.ws()
	return r.i < len(r.b) && r.b[r.i] == '{'
}

// members calls f for each member of the object at r.i, nested at depth
// 1 of the event; f reads the value.
func (r *escReader) members(f func(k []byte) bool) bool {
	empty, ok := r.objStart()
	if !ok {
		return false
	}
	for !empty {
		k, ok := r.key()
		if !ok || !f(k) {
			return false
		}
		if empty, ok = r.next('}'); !ok {
			return false
		}
	}
	return true
}

// member reads the next member of an object nested at depth 1 of the
// event: its key, and its value at depth 2.
func (r *escReader) member() ([]byte, rawVal, bool) {
	k, ok := r.key()
	if !ok {
		return nil, rawVal{}, false
	}
	v, ok := r.value(2)
	return k, v, ok
}

// The four objects below are read with a loop of their own rather than
// through members: a member costs no call through a closure.

// user is readUserIter for the escaped form.
func (r *escReader) user() (k8sUser, bool) {
	var u k8sUser
	empty, ok := r.objStart()
	for ok && !empty {
		k, v, mok := r.member()
		if !mok {
			return u, false
		}
		switch string(k) {
		case "username":
			u.username = r.cached(v)
		case "uid":
			u.uidRaw = v
		case "groups":
			u.groupsRaw = v
		case "extra":
			if u.extraRaw.set() { // a second extra adds to the first
				u.addExtra(u.extraRaw)
			}
			u.extraRaw = v
		}
		empty, ok = r.next('}')
	}
	return u, ok
}

// objectRef is objectRefIter for the escaped form.
func (r *escReader) objectRef(a *auditEvent) bool {
	empty, ok := r.objStart()
	for ok && !empty {
		k, v, mok := r.member()
		if !mok {
			return false
		}
		switch string(k) {
		case "resource":
			a.resource = r.cached(v)
		case "namespace":
			a.namespaceRaw = v
		case "name":
			a.nameRaw = v
		case "apiGroup":
			a.apiGroupRaw = v
		case "apiVersion":
			a.objAPIVersionRaw = v
		case "subresource":
			a.subresource = r.cached(v)
		}
		empty, ok = r.next('}')
	}
	return ok
}

// status is statusIter for the escaped form.
func (r *escReader) status(a *auditEvent) bool {
	empty, ok := r.objStart()
	for ok && !empty {
		k, v, mok := r.member()
		if !mok {
			return false
		}
		switch string(k) {
		case "code":
			if n, ok := intValue(v.json()); ok && n >= 0 && n < 1<<31 {
				a.code = int32(n)
			}
		case "status":
			a.statusRaw = v
		case "reason":
			a.reasonRaw = v
		case "message":
			a.messageRaw = v
		}
		empty, ok = r.next('}')
	}
	return ok
}

// annotations is annotationsIter for the escaped form. Only the decision
// is read now, for the noise policy: the reason and the other
// annotations are left raw, the object itself in a.annotationsRaw, for
// materialize.
func (r *escReader) annotations(a *auditEvent) bool {
	start := r.i
	others := false
	empty, ok := r.objStart()
	for ok && !empty {
		k, v, mok := r.member()
		if !mok {
			return false
		}
		switch string(k) {
		case "authorization.k8s.io/decision":
			a.decision = r.cached(v)
		case "authorization.k8s.io/reason":
			a.authzReasonRaw = v
		default:
			others = true
		}
		empty, ok = r.next('}')
	}
	if ok && others {
		if a.annotationsRaw.set() { // a second annotations object adds to the first
			a.addAnnotations(a.annotationsRaw, r.sc, r.esc)
		}
		a.annotationsRaw = rawVal{b: r.b[start:r.i], escaped: true}
	}
	return ok
}

// addAnnotations adds the annotations of an object the escaped reader
// has validated, other than the authorization decision and reason, to
// a.annotations, as annotations would.
func (a *auditEvent) addAnnotations(v rawVal, sc, esc *strCache) {
	r := escReader{b: v.b, sc: sc, esc: esc}
	r.members(func(k []byte) bool {
		v, ok := r.value(2)
		if !ok {
			return false
		}
		switch string(k) {
		case "authorization.k8s.io/decision", "authorization.k8s.io/reason":
		default:
			if a.annotations == nil {
				a.annotations = make(map[string]string, 2)
			}
			a.annotations[string(k)] = r.cached(v)
		}
		return true
	})
}
