# backends/: the backends that make file systems and disks with
# external tools -- tmpdisk, ondemand, linuxdisk, iso -- and the code
# they share (fragment of the top-level Makefile.am).

backend_PROGRAMS += backends/tmpdisk/nbdkit-tmpdisk-backend
backends_tmpdisk_nbdkit_tmpdisk_backend_SOURCES = \
	backends/tmpdisk/tmpdisk.c \
	backends/mkfs-disk.c backends/mkfs-disk.h \
	backends/run-tool.c backends/run-tool.h \
	backends/sparse-file.c backends/sparse-file.h
backends_tmpdisk_nbdkit_tmpdisk_backend_LDADD = $(backend_link_libs)
backends_tmpdisk_nbdkit_tmpdisk_backend_LDFLAGS = $(backend_link_flags)

backend_PROGRAMS += backends/ondemand/nbdkit-ondemand-backend
backends_ondemand_nbdkit_ondemand_backend_SOURCES = \
	backends/ondemand/ondemand.c \
	backends/mkfs-disk.c backends/mkfs-disk.h \
	backends/run-tool.c backends/run-tool.h \
	backends/sparse-file.c backends/sparse-file.h
backends_ondemand_nbdkit_ondemand_backend_LDADD = $(backend_link_libs)
backends_ondemand_nbdkit_ondemand_backend_LDFLAGS = $(backend_link_flags)

backend_PROGRAMS += backends/linuxdisk/nbdkit-linuxdisk-backend
backends_linuxdisk_nbdkit_linuxdisk_backend_SOURCES = \
	backends/linuxdisk/linuxdisk.c \
	backends/linuxdisk/gpt.c backends/linuxdisk/gpt.h \
	backends/run-tool.c backends/run-tool.h
backends_linuxdisk_nbdkit_linuxdisk_backend_LDADD = $(backend_link_libs)
backends_linuxdisk_nbdkit_linuxdisk_backend_LDFLAGS = $(backend_link_flags)

backend_PROGRAMS += backends/iso/nbdkit-iso-backend
backends_iso_nbdkit_iso_backend_SOURCES = \
	backends/iso/iso.c \
	backends/run-tool.c backends/run-tool.h
backends_iso_nbdkit_iso_backend_LDADD = $(backend_link_libs)
backends_iso_nbdkit_iso_backend_LDFLAGS = $(backend_link_flags)

man_MANS += \
	docs/nbdkit-tmpdisk-backend.1 \
	docs/nbdkit-ondemand-backend.1 \
	docs/nbdkit-linuxdisk-backend.1 \
	docs/nbdkit-iso-backend.1
EXTRA_DIST += \
	docs/nbdkit-tmpdisk-backend.pod \
	docs/nbdkit-ondemand-backend.pod \
	docs/nbdkit-linuxdisk-backend.pod \
	docs/nbdkit-iso-backend.pod \
	tests/tmpdisk.bats \
	tests/ondemand.bats \
	tests/linuxdisk.bats \
	tests/iso.bats
