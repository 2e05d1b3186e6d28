//go:build tools

// critest is the test binary of sigs.k8s.io/cri-tools/cmd/critest, built with
// `go test -c`; `go mod tidy` does not follow the tests of a dependency, so
// the packages that test imports are named here to keep their go.sum entries.
package tools

import (
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/ginkgo/v2/types"
	_ "github.com/onsi/gomega"
	_ "sigs.k8s.io/cri-tools/pkg/benchmark"
	_ "sigs.k8s.io/cri-tools/pkg/common"
	_ "sigs.k8s.io/cri-tools/pkg/framework"
	_ "sigs.k8s.io/cri-tools/pkg/validate"
	_ "sigs.k8s.io/cri-tools/pkg/version"
)
