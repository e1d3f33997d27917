package command

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// mongoURL returns the MongoDB URL: the content of --mongo-url-file
// (MONGO_URL_FILE) when given, which wins over --mongo-url (MONGO_URL), so
// a password can come from a file or a container secret instead of the
// command line or the environment. Surrounding white space (a trailing
// newline) is dropped. Errors name the file, never its content.
func mongoURL(c *cli.Context) (string, error) {
	path := c.String(flagMongoURLFile)
	if path == "" {
		return c.String(flagMongoURL), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--%s (env MONGO_URL_FILE): cannot read the MongoDB URL: %w; mount the file or unset the option", flagMongoURLFile, err)
	}
	u := strings.TrimSpace(string(b))
	if u == "" {
		return "", fmt.Errorf("--%s (env MONGO_URL_FILE): %s is empty; write the mongodb:// URL into it", flagMongoURLFile, path)
	}
	return u, nil
}
