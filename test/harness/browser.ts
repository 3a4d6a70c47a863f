/** The test browser is the one sky ships for host apps' tests (sky/testing). */
export { Browser, type Hop } from '../../lib/testing/browser';
