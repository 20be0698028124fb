package main

import (
	"fmt"
	"os"
	"strings"
)

// readSecretFile reads a bearer token or API key from the file a flag names;
// an empty path means none is configured. Surrounding whitespace (the
// newline an editor adds) is not part of the secret, and a file holding
// nothing else is an error: an operator who named a file meant a secret.
func readSecretFile(path, flag string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cannot read %s %s: %w", flag, path, err)
	}
	secret := strings.TrimSpace(string(b))
	if secret == "" {
		return "", fmt.Errorf("%s %s is empty: put the secret in it", flag, path)
	}
	return secret, nil
}
