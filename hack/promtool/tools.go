//go:build tools

// Package tools pins promtool (cmd/promtool of the Prometheus Go module) for hack/build-promtool.sh.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
