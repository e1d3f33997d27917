package command

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProbeConnectTimeout: --connect-timeout and CONNECT_TIMEOUT reach
// the probe's effective configuration, with the documented default.
func TestProbeConnectTimeout(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"default", nil, "", "30s"},
		{"flag", []string{"--connect-timeout", "2m"}, "", "2m0s"},
		{"env", nil, "45s", "45s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("CONNECT_TIMEOUT", tt.env)
			}
			var out, errs bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := append([]string{"mission", "probe", "--read", "x.pcap", "--transport", "tcp", "--print-config"}, tt.args...)
			require.NoError(t, New("test", &out, &errs).RunContext(ctx, args), errs.String())
			var cfg struct {
				Export struct {
					ConnectTimeout string `json:"connectTimeout"`
				} `json:"export"`
			}
			require.NoError(t, json.Unmarshal(out.Bytes(), &cfg), out.String())
			require.Equal(t, tt.want, cfg.Export.ConnectTimeout)
		})
	}
}
