package command

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestApplyRole(t *testing.T) {
	for _, tc := range []struct {
		args []string
		role string
		want []string
	}{
		{[]string{"mission"}, "", []string{"mission"}},
		{[]string{"mission"}, "probe", []string{"mission", "probe"}},
		{[]string{"mission"}, "Collector", []string{"mission", "collect"}},
		{[]string{"mission", "--log-level", "debug"}, "probe", []string{"mission", "probe", "--log-level", "debug"}},
		{[]string{"mission", "collect"}, "probe", []string{"mission", "collect"}},
		{[]string{"mission", "--help"}, "probe", []string{"mission", "--help"}},
	} {
		require.Equal(t, tc.want, ApplyRole(tc.args, tc.role), "%v ROLE=%s", tc.args, tc.role)
	}
}

func TestParseLevel(t *testing.T) {
	for in, ok := range map[string]bool{"INFO": true, "debug": true, "WARNING": true, "critical": true, "error": true, "loud": false, "": false} {
		_, err := parseLevel(in)
		require.Equal(t, ok, err == nil, in)
	}
}
