/** The errno name (ENOENT, EEXIST, ...) of a failed system call's error; undefined for other errors. */
export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
