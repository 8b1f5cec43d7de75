//go:build !linux

package action

func registerBuiltins(r *Registry) { registerPortable(r) }
