package store

import (
	"net/url"
	"strings"
)

// redacted replaces secrets in messages.
const redacted = "xxxxx"

// RedactURL hides the secrets of a MongoDB URL for messages: the password
// becomes "xxxxx", and so do the values of options that hold secrets
// (tlsCertificateKeyFilePassword, authMechanismProperties, which may carry
// a token, and any option named like a password, secret or token). It
// follows the driver's reading of the user information (up to the last @
// before the query), so a URL the driver would refuse is still redacted; a
// string without "://" that holds an @ becomes "(unparsable URL)".
func RedactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		if strings.Contains(s, "@") {
			return "(unparsable URL)"
		}
		return s
	}
	body, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndex(body, "@"); at >= 0 {
		if user, _, hasPassword := strings.Cut(body[:at], ":"); hasPassword {
			body = user + ":" + redacted + body[at:]
		}
	}
	out := scheme + "://" + body
	if hasQuery {
		out += "?" + redactQuery(query)
	}
	return out
}

// secretOption reports whether a URL option's value is a secret.
func secretOption(key string) bool {
	k := strings.ToLower(key)
	return k == "authmechanismproperties" || strings.Contains(k, "password") ||
		strings.Contains(k, "secret") || strings.Contains(k, "token")
}

func redactQuery(q string) string {
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if ok && secretOption(k) {
			parts[i] = k + "=" + redacted
		}
	}
	return strings.Join(parts, "&")
}

// urlSecrets returns what of a MongoDB URL must never appear in a
// message: the password and the secret options' values, as written and
// decoded. Secrets under three characters are left out: replacing them
// everywhere would garble messages more than it hides.
func urlSecrets(s string) []string {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return nil
	}
	body, query, _ := strings.Cut(rest, "?")
	var raw []string
	if at := strings.LastIndex(body, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(body[:at], ":"); ok {
			raw = append(raw, pw)
		}
	}
	for _, p := range strings.Split(query, "&") {
		if k, v, ok := strings.Cut(p, "="); ok && secretOption(k) {
			raw = append(raw, v)
		}
	}
	var out []string
	for _, r := range raw {
		out = append(out, r)
		if d, err := url.PathUnescape(r); err == nil && d != r {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(r); err == nil && d != r {
			out = append(out, d)
		}
	}
	n := 0
	for _, v := range out {
		if len(v) >= 3 {
			out[n] = v
			n++
		}
	}
	return out[:n]
}

// redactText replaces the URL and each of its secrets in msg.
func redactText(msg, rawURL string) string {
	if rawURL == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, rawURL, RedactURL(rawURL))
	for _, s := range urlSecrets(rawURL) {
		msg = strings.ReplaceAll(msg, s, redacted)
	}
	return msg
}

// redactedError is an error whose message had a URL's secrets removed;
// errors.Is and errors.As still see the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactError hides rawURL's secrets in err's message: the driver's own
// errors may quote the URL or parts of it.
func redactError(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := redactText(msg, rawURL)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

// RedactError is redactError for callers outside the package that wrap
// errors mentioning a database URL.
func RedactError(err error, rawURL string) error { return redactError(err, rawURL) }

// SocketURL returns the mongodb:// URL of a Unix socket: the path
// percent-encoded in the host part (mongodb://%2Fdata%2Fmongodb.sock/), the
// form mongosh, PyMongo and the Go driver accept.
func SocketURL(path string) string {
	var b strings.Builder
	b.WriteString("mongodb://")
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	b.WriteString("/")
	return b.String()
}
