package action

// registerPortable registers the types that need no Linux system call.
func registerPortable(r *Registry) {
	r.Register("emit", Type{New: newEmit, Args: map[string]ArgKind{"event_type": ArgString, "subject": ArgString, "data": ArgString}, Required: []string{"event_type"}})
	r.Register("webhook", Type{New: newWebhook, Args: map[string]ArgKind{"url": ArgString, "timeout": ArgDuration, "retries": ArgInt, "backoff": ArgDuration, "secret_env": ArgString}, Required: []string{"url"}})
	registerGuard(r)
	r.Register("exec", Type{New: newExec, Args: map[string]ArgKind{"argv": ArgList, "rollback": ArgList, "timeout": ArgDuration, "env": ArgList}, Required: []string{"argv"}})
}
