package tlsconf

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestHarden(t *testing.T) {
	for _, tc := range []struct {
		name       string
		in         *tls.Config
		minVersion uint16
		suites     []uint16
	}{
		{"nil", nil, tls.VersionTLS12, CipherSuites},
		{"open", &tls.Config{}, tls.VersionTLS12, CipherSuites},
		{"TLS 1.0 asked", &tls.Config{MinVersion: tls.VersionTLS10}, tls.VersionTLS12, CipherSuites},
		{"TLS 1.3 kept", &tls.Config{MinVersion: tls.VersionTLS13}, tls.VersionTLS13, CipherSuites},
		{"suites kept", &tls.Config{CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}}, tls.VersionTLS12,
			[]uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := Harden(tc.in)
			require.Equal(t, tc.minVersion, out.MinVersion)
			require.Equal(t, tc.suites, out.CipherSuites)
			if tc.in != nil {
				require.NotSame(t, tc.in, out, "a copy")
			}
		})
	}
	for _, id := range CipherSuites {
		for _, s := range tls.InsecureCipherSuites() {
			require.NotEqual(t, s.ID, id, s.Name)
		}
	}
}
