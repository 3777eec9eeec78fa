"""voxpipe.pipelines."""
