// Command metricnames reads a JSON list of PromQL expressions on stdin and prints, as JSON, the
// metric names each one selects, using Prometheus' own PromQL parser (the one promtool uses).
// A metric selected by a __name__ matcher that is not an equality is reported as "~<regex>".
// Used by tests/unit/monitoring to check dashboard and alert queries against exported metrics.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr  string   `json:"expr"`
	Names []string `json:"names"`
	Error string   `json:"error,omitempty"`
}

func names(expr string) ([]string, error) {
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			seen[vs.Name] = true
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name != labels.MetricName {
				continue
			}
			if m.Type == labels.MatchEqual {
				seen[m.Value] = true
			} else {
				seen["~"+m.Value] = true
			}
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for name := range seen {
		out = append(out, name)
	}
	sort.Strings(out)
	return out, nil
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "metricnames: stdin must be a JSON list of strings:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(exprs))
	for _, e := range exprs {
		r := result{Expr: e, Names: []string{}}
		if n, err := names(e); err != nil {
			r.Error = err.Error()
		} else {
			r.Names = n
		}
		results = append(results, r)
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "metricnames:", err)
		os.Exit(1)
	}
}
