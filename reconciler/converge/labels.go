package converge

// Labels docker compose itself puts on what it creates, so `docker compose
// -p <project> ps` lists hawser's containers, and hawser's own.
const (
	LabelProject     = "com.docker.compose.project"
	LabelService     = "com.docker.compose.service"
	LabelNumber      = "com.docker.compose.container-number"
	LabelOneoff      = "com.docker.compose.oneoff"
	LabelConfigHash  = "com.docker.compose.config-hash"
	LabelImage       = "com.docker.compose.image"
	LabelWorkingDir  = "com.docker.compose.project.working_dir"
	LabelConfigFiles = "com.docker.compose.project.config_files"
	LabelVersion     = "com.docker.compose.version"
	LabelNetwork     = "com.docker.compose.network"
	LabelVolume      = "com.docker.compose.volume"

	LabelCommit = "dev.hawser.commit"
	// LabelImageRef is the reference the image was resolved from: the
	// container itself is created from the image ID.
	LabelImageRef   = "dev.hawser.image"
	LabelDeployment = "dev.hawser.deployment"
	// LabelConfigKeys holds a short hash per service field, so the next
	// deployment can say which fields changed.
	LabelConfigKeys = "dev.hawser.config-keys"
)

// composeVersion is the docker compose version whose container layout hawser
// reproduces; compose reads it only for display.
const composeVersion = "2.29.0"
