/**
 * @module store/urls/port
 * The short-URL storage port. Every method but the redirect's lookup takes the tenant
 * namespace first. Short ids are unique across all namespaces, because the public redirect
 * `GET /u/{id}` carries no key and must find the URL by its id alone: each adapter keeps one
 * global id → namespace mapping (the id is the primary key, the namespace a column).
 */

export interface ShortUrlRecord {
  id: string;
  /** The absolute http(s) URL the short URL redirects to. */
  destination: string;
  /** Redirect with 301 (permanent, browsers cache it) instead of 302. */
  permanent: boolean;
  /** How many times the redirect was followed. */
  hitCount: number;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
}

export interface NewShortUrl {
  id: string;
  destination: string;
  permanent: boolean;
  createdAt: number;
}

export interface ShortUrlChanges {
  destination?: string;
  permanent?: boolean;
  updatedAt: number;
}

/** What the redirect needs, found by id alone. */
export interface RedirectTarget {
  destination: string;
  permanent: boolean;
}

export interface UrlStore {
  /**
   * Stores a new short URL. Returns false, storing nothing, when the id is already taken in
   * any namespace (this one or another).
   */
  insert(namespace: string, url: NewShortUrl): Promise<boolean>;
  get(namespace: string, id: string): Promise<ShortUrlRecord | undefined>;
  /** Every short URL of the namespace, oldest first. */
  list(namespace: string): Promise<ShortUrlRecord[]>;
  /** Changes the given fields; returns the updated record, or undefined when there is none. */
  update(namespace: string, id: string, changes: ShortUrlChanges): Promise<ShortUrlRecord | undefined>;
  /** Returns false when the namespace has no such id. */
  delete(namespace: string, id: string): Promise<boolean>;
  /**
   * The public redirect's lookup, across namespaces. With `countHit`, the hit counter goes up
   * by one in the same atomic statement, so concurrent redirects never lose an increment.
   */
  follow(id: string, countHit: boolean): Promise<RedirectTarget | undefined>;
  /** Deletes the short URLs of every environment of a project (namespaces `${projectId}/...`). */
  deleteProject(projectId: string): Promise<number>;
  close?(): Promise<void>;
}
