package packaging

import (
	"fmt"
	"regexp"
	"strings"
)

// A version goes into -ldflags -X and a Debian version: no spaces or quotes.
var versionChars = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~-]*$`)

// DebVersion returns the Debian package version for a haroll version such as
// `git describe --tags --always --dirty` prints: a leading "v" before a digit
// is dropped (v1.4.2 -> 1.4.2), and a version that does not start with a digit,
// as a bare commit does, gets "0~git" in front (f133c45-dirty ->
// 0~gitf133c45-dirty), which dpkg requires and orders before any release. A
// version with other characters than letters, digits and . + ~ - is an error.
func DebVersion(v string) (string, error) {
	if !versionChars.MatchString(v) {
		return "", fmt.Errorf("version %q: use letters, digits and . + ~ - only, starting with a letter or digit (e.g. 1.4.2 or the output of git describe --tags --always --dirty)", v)
	}
	if len(v) > 1 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	if v[0] < '0' || v[0] > '9' {
		v = "0~git" + v
	}
	// dpkg splits the revision off at the last '-'; a revision ending in '-' is invalid.
	return strings.TrimSuffix(v, "-"), nil
}
