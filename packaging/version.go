package packaging

import (
	"fmt"
	"regexp"
	"strings"
)

// A version goes into -ldflags -X and a Debian version: no spaces or quotes.
var versionChars = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+~-]*$`)

// What `git describe --always --dirty` prints in a repository without tags.
var bareCommit = regexp.MustCompile(`^[0-9a-f]{7,40}(-dirty)?$`)

// DebVersion returns the Debian package version for a haroll version such as
// `git describe --tags --always --dirty` prints: a leading "v" before a digit
// is dropped (v1.4.2 -> 1.4.2), and a bare commit (f133c45-dirty, 3156ac4), or
// anything else that does not start with a digit, gets "0~git" in front
// (0~gitf133c45-dirty): dpkg wants a leading digit, and this orders it before
// any release. A version with other characters than letters, digits and
// . + ~ - is an error.
func DebVersion(v string) (string, error) {
	if !versionChars.MatchString(v) {
		return "", fmt.Errorf("version %q: use letters, digits and . + ~ - only, starting with a letter or digit (e.g. 1.4.2 or the output of git describe --tags --always --dirty)", v)
	}
	if len(v) > 1 && v[0] == 'v' && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	if bareCommit.MatchString(v) || v[0] < '0' || v[0] > '9' {
		v = "0~git" + v
	}
	// dpkg splits the revision off at the last '-'; a revision ending in '-' is invalid.
	return strings.TrimSuffix(v, "-"), nil
}
