package metrics

import (
	"fmt"
	"strconv"
	"strings"
)

// histogram renders the exposition text of a histogram over durationBuckets
// for CollectAndCompare. cumulative maps the first bucket (upper bound) at
// which the running count reaches a value; buckets before the first key are
// 0 and each later one holds the count of the last key reached.
func histogram(name, help, labels string, cumulative map[float64]int, count int, sum float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	sep := ""
	if labels != "" {
		sep = ","
	}
	n := 0
	for _, le := range durationBuckets {
		if c, ok := cumulative[le]; ok {
			n = c
		}
		fmt.Fprintf(&b, "%s_bucket{%s%sle=\"%s\"} %d\n", name, labels, sep, strconv.FormatFloat(le, 'g', -1, 64), n)
	}
	fmt.Fprintf(&b, "%s_bucket{%s%sle=\"+Inf\"} %d\n", name, labels, sep, count)
	braces := ""
	if labels != "" {
		braces = "{" + labels + "}"
	}
	fmt.Fprintf(&b, "%s_sum%s %s\n%s_count%s %d\n", name, braces, strconv.FormatFloat(sum, 'g', -1, 64), name, braces, count)
	return b.String()
}
