// Package version is the one place that says which Kubernetes API level
// skiff serves and reports, so the API server's /version and every kubelet's
// node status agree, and kubectl's version-skew checks see a peer.
package version

// Kubernetes is the API level skiff speaks (the minor version kubectl and its
// version dispatchers match against).
const Kubernetes = "v1.33.0"

// Skiff is the version string components report: the API level plus a
// suffix naming the implementation.
const Skiff = Kubernetes + "-skiff"

// Major and Minor split Kubernetes as /version reports them.
const (
	Major = "1"
	Minor = "33"
)
