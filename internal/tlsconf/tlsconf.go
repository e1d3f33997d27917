// Package tlsconf holds the TLS defaults of IPFIX over TLS, for the
// collector's listener and the probe's exporter alike.
package tlsconf

import "crypto/tls"

// CipherSuites are the TLS 1.2 suites allowed: ECDHE key exchange (forward
// secrecy) with AEAD ciphers only. TLS 1.3 suites are all modern and not
// configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Harden returns a copy of cfg (nil: a new one) with TLS 1.2 as the
// lowest version and CipherSuites, where cfg leaves them open or asks for
// less.
func Harden(cfg *tls.Config) *tls.Config {
	var c *tls.Config
	if cfg == nil {
		c = &tls.Config{}
	} else {
		c = cfg.Clone()
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.CipherSuites == nil {
		c.CipherSuites = CipherSuites
	}
	return c
}
