package collector

import (
	"bytes"
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
)

// A collector serving plain IPFIX beyond this host without an allow-list
// says so at start.
func TestExposedPlain(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name   string
		host   string
		listen []string
		allow  []netip.Prefix
		want   []string
	}{
		{"all interfaces", "0.0.0.0", []string{"udp", "tcp"}, nil, []string{"udp", "tcp"}},
		{"all interfaces IPv6", "::", []string{"udp"}, nil, []string{"udp"}},
		{"empty host", "", []string{"tcp"}, nil, []string{"tcp"}},
		{"a LAN address", "192.0.2.7", []string{"udp"}, nil, []string{"udp"}},
		{"a host name", "collector.example", []string{"tcp"}, nil, []string{"tcp"}},
		{"allow-list", "0.0.0.0", []string{"udp", "tcp"}, allow, nil},
		{"loopback", "127.0.0.1", []string{"udp", "tcp"}, nil, nil},
		{"loopback IPv6", "::1", []string{"udp"}, nil, nil},
		{"localhost", "localhost", []string{"udp"}, nil, nil},
		{"unix only", "0.0.0.0", []string{"unix"}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, exposedPlain(tc.host, tc.listen, tc.allow))
		})
	}

	// On loopback, Run warns about nothing.
	var logs bytes.Buffer
	c := New(Config{Host: "127.0.0.1", Port: 0, Listen: []string{"udp"}, Logger: zerolog.New(&logs)}, &memSink{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	_, err := c.Addrs(ctx)
	require.NoError(t, err)
	cancel()
	require.NoError(t, <-done)
	require.Contains(t, logs.String(), "collector listening")
	require.NotContains(t, logs.String(), "without an allow-list")
}
