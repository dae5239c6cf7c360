// Package kubectltest runs the real kubectl against a test control plane to
// check that it can use skiff's OpenAPI documents: explain through v3 and
// v2, and apply's field validation. It lives apart from package openapi so
// that the unit tests there do not build the whole server.
package kubectltest
