package packaging

import (
	"strings"
	"testing"
)

func TestDebVersionsStartWithADigitAsDpkgWants(t *testing.T) {
	for in, want := range map[string]string{
		"1.4.2":             "1.4.2",
		"v1.4.2":            "1.4.2",
		"v1.4.2-3-gf133c45": "1.4.2-3-gf133c45",
		"f133c45":           "0~gitf133c45",
		"f133c45-dirty":     "0~gitf133c45-dirty",
		"3156ac4":           "0~git3156ac4",
		"1.10":              "1.10",
		"vnext":             "0~gitvnext",
		"1.0~rc1":           "1.0~rc1",
	} {
		got, err := DebVersion(in)
		if err != nil || got != want {
			t.Errorf("DebVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestAVersionThatCannotGoIntoLdflagsIsRefused(t *testing.T) {
	for _, in := range []string{"", "1.0 beta", `1"2`, "-1", "1_2", "1.0\n"} {
		if _, err := DebVersion(in); err == nil || !strings.Contains(err.Error(), "letters, digits") {
			t.Errorf("DebVersion(%q): got %v", in, err)
		}
	}
}
