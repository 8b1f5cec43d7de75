package action

func registerBuiltins(r *Registry) {
	registerPortable(r)
	registerFileActions(r)
	registerSignal(r)
}
