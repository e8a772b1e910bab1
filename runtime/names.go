package runtime

import (
	"fmt"
	"strings"
	"unicode"
)

// ValidateName reports whether s can be sent as a backend or server name.
// Names travel inside a line-oriented protocol where ';' separates commands,
// so ';', whitespace, '/', and control characters are refused with ErrInvalidName.
func ValidateName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is empty: %w", kind, ErrInvalidName)
	}
	if i := strings.IndexFunc(s, badNameRune); i >= 0 {
		return fmt.Errorf("%s name %q contains %q: %w", kind, s, s[i], ErrInvalidName)
	}
	return nil
}

func badNameRune(r rune) bool {
	return r == ';' || r == '/' || r == '#' || r <= ' ' || unicode.IsSpace(r) || unicode.IsControl(r)
}

func serverRef(backend, server string) (string, error) {
	if err := ValidateName("backend", backend); err != nil {
		return "", err
	}
	if err := ValidateName("server", server); err != nil {
		return "", err
	}
	return backend + "/" + server, nil
}
