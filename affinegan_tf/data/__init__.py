"""Reading face videos: files -> uint8 frames -> cached arrays -> tf.data training samples."""
