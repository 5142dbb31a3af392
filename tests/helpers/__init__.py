"""What several test modules share: fakes of one part of the host, builders of fixture facts,
the golden-file check. Test modules import from here, never from one another."""
