package probe

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSourceAndCollectorErrors checks the errors a CLI maps to its flags:
// they are sentinels, and their text names no flag.
func TestSourceAndCollectorErrors(t *testing.T) {
	tests := []struct {
		name string
		err  func() error
		want error
	}{
		{"no source", func() error { _, err := New(Config{}, &discardExporter{}); return err }, ErrNoSource},
		{"two sources", func() error {
			_, err := New(Config{Interface: "lo", ReadFile: "x.pcap"}, &discardExporter{})
			return err
		}, ErrTwoSources},
		{"bad UDP collector", func() error {
			_, err := NewIPFIXExporter(IPFIXConfig{Transport: "udp", Address: "no-port-here"})
			return err
		}, ErrCollectorAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err()
			require.ErrorIs(t, err, tt.want)
			require.NotContains(t, err.Error(), "--")
		})
	}
}
